"""Services, routes, consumers and key-auth credentials: Kong's defaults, shapes and statuses."""

from __future__ import annotations

import httpx

from tests.admin.conftest import AdminServer


def test_service_url_shorthand_and_kong_defaults(api: httpx.Client) -> None:
    answer = api.post("/services", json={"name": "s1", "url": "https://example.com/api"})
    assert answer.status_code == 201
    service = answer.json()
    assert {k: service[k] for k in ("protocol", "host", "port", "path")} == {
        "protocol": "https", "host": "example.com", "port": 443, "path": "/api"}
    assert service["retries"] == 5 and service["enabled"] is True and service["tls_verify"] is None
    assert service["connect_timeout"] == service["write_timeout"] == service["read_timeout"] == 60000
    assert "url" not in service
    assert isinstance(service["created_at"], int) and service["tags"] is None


def test_service_requires_host(api: httpx.Client) -> None:
    answer = api.post("/services", json={"name": "s1"})
    assert answer.status_code == 400
    assert answer.json() == {"code": 2, "name": "schema violation",
                             "message": "schema violation (host: required field missing)",
                             "fields": {"host": "required field missing"}}


def test_several_problems_are_all_listed(api: httpx.Client) -> None:
    answer = api.post("/services", json={"port": "x", "retries": -1})
    body = answer.json()
    assert answer.status_code == 400
    assert body["fields"] == {"host": "required field missing", "port": "expected an integer",
                              "retries": "value should be between 0 and 32767"}
    assert body["message"] == ("3 schema violations (host: required field missing; port: expected an integer; "
                               "retries: value should be between 0 and 32767)")


def test_get_patch_put_delete_by_id_and_name(admin: AdminServer) -> None:
    api = admin.client
    created = api.post("/services", data={"name": "s1", "host": "a.test"}).json()
    assert api.get(f"/services/{created['id']}").json() == created
    assert api.get("/services/s1/").json() == created
    patched = api.patch("/services/s1", data={"port": "8080"})
    assert patched.status_code == 200 and patched.json()["port"] == 8080
    replaced = api.put("/services/s1", json={"host": "b.test"})
    assert replaced.status_code == 200
    assert replaced.json()["id"] == created["id"] and replaced.json()["port"] == 80
    upserted = api.put("/services/s2", json={"host": "c.test"})
    assert upserted.status_code == 200 and upserted.json()["name"] == "s2"
    assert api.delete("/services/s1").status_code == 204
    assert api.delete("/services/s1").status_code == 204
    assert api.get("/services/s1").status_code == 404
    assert api.get("/services/s1").json() == {"message": "Not found"}
    assert len(admin.changes) == 5


def test_put_by_id_creates_with_that_id(api: httpx.Client) -> None:
    ident = "11111111-2222-3333-4444-555555555555"
    answer = api.put(f"/consumers/{ident}", json={"username": "u"})
    assert answer.status_code == 200 and answer.json()["id"] == ident


def test_route_defaults(api: httpx.Client) -> None:
    route = api.post("/routes", json={"paths": ["/a"]}).json()
    assert route["protocols"] == ["http", "https"] and route["strip_path"] is True
    assert route["preserve_host"] is False and route["regex_priority"] == 0
    assert route["path_handling"] == "v0" and route["https_redirect_status_code"] == 426
    assert route["request_buffering"] is True and route["response_buffering"] is True
    assert route["service"] is None


def test_route_needs_a_matcher_and_paths_start_with_slash(api: httpx.Client) -> None:
    answer = api.post("/routes", json={"name": "r"})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"@entity": [
        "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]}
    answer = api.post("/routes", json={"paths": ["/ok", "nope"]})
    assert answer.json()["fields"] == {"paths": [None, "should start with: / (fixed path) or ~/ (regex path)"]}
    assert answer.json()["message"] == (
        "schema violation (paths.2: should start with: / (fixed path) or ~/ (regex path))")


def test_routes_nested_under_service_and_route_service(api: httpx.Client) -> None:
    service = api.post("/services", data={"name": "s", "host": "h"}).json()
    route = api.post("/services/s/routes", data={"name": "r", "hosts": "x.test"}).json()
    assert route["hosts"] == ["x.test"] and route["service"] == {"id": service["id"]}
    assert [r["id"] for r in api.get(f"/services/{service['id']}/routes").json()["data"]] == [route["id"]]
    assert api.get("/routes/r/service").json()["id"] == service["id"]
    assert api.get(f"/services/s/routes/{route['id']}").status_code == 200
    assert api.post("/services/missing/routes", data={"paths": "/a"}).status_code == 404


def test_deleting_a_service_with_routes_is_refused(api: httpx.Client) -> None:
    api.post("/services", data={"name": "s", "host": "h"})
    api.post("/services/s/routes", data={"paths[]": "/a"})
    answer = api.delete("/services/s")
    assert answer.status_code == 400
    assert answer.json() == {"code": 4, "name": "foreign key violation",
                             "message": "an existing 'routes' entity references this 'services' entity",
                             "fields": {"@referenced_by": "routes"}}


def test_unknown_foreign_key_is_a_foreign_key_violation(api: httpx.Client) -> None:
    missing = "00000000-0000-0000-0000-000000000001"
    answer = api.post("/routes", json={"paths": ["/a"], "service": {"id": missing}})
    assert answer.status_code == 400
    assert answer.json() == {
        "code": 4, "name": "foreign key violation",
        "message": f"the foreign key '{{id=\"{missing}\"}}' does not reference an existing 'services' entity.",
        "fields": {"service": {"id": missing}}}


def test_consumer_needs_username_or_custom_id_each_unique(api: httpx.Client) -> None:
    answer = api.post("/consumers", json={})
    assert answer.json()["message"] == (
        "schema violation (at least one of these fields must be non-empty: 'custom_id', 'username')")
    assert api.post("/consumers", data={"username": "x"}).status_code == 201
    answer = api.post("/consumers", data={"username": "x"})
    assert answer.status_code == 409
    assert answer.json() == {"code": 5, "name": "unique constraint violation",
                             "message": "UNIQUE violation detected on '{username=\"x\"}'",
                             "fields": {"username": "x"}}
    assert api.post("/consumers", data={"custom_id": "c1"}).status_code == 201
    assert api.post("/consumers", data={"custom_id": "c1"}).status_code == 409


def test_key_auth_credentials(api: httpx.Client) -> None:
    consumer = api.post("/consumers", data={"username": "poppy"}).json()
    generated = api.post("/consumers/poppy/key-auth").json()
    assert len(generated["key"]) >= 32 and generated["consumer"] == {"id": consumer["id"]}
    assert api.post("/consumers/poppy/key-auth", data={"key": "k1", "ttl": "60"}).json()["ttl"] == 60
    assert api.get("/consumers/poppy/key-auth/k1").json()["key"].startswith("sha256:")  # hashed at rest
    assert api.get("/key-auths/k1").json()["consumer"] == {"id": consumer["id"]}
    assert len(api.get("/key-auths").json()["data"]) == 2
    assert api.get("/key-auths/k1/consumer").json()["username"] == "poppy"
    assert api.post("/consumers/poppy/key-auth", data={"key": "k1"}).status_code == 409
    assert api.post("/key-auths", json={"key": "k2"}).json()["fields"] == {"consumer": "required field missing"}
    assert api.patch("/consumers/poppy/key-auth/k1", data={"key": "k3"}).json()["key"] == "k3"
    assert api.delete("/consumers/poppy/key-auth/k3").status_code == 204
    assert api.get("/key-auths/k3").status_code == 404


def test_deleting_a_consumer_cascades_credentials_and_plugins(api: httpx.Client) -> None:
    api.post("/consumers", data={"username": "poppy"})
    api.post("/consumers/poppy/key-auth", data={"key": "k1"})
    api.post("/consumers/poppy/plugins", data={"name": "billable"})
    assert api.delete("/consumers/poppy").status_code == 204
    assert api.get("/key-auths").json()["data"] == []
    assert api.get("/plugins").json()["data"] == []


def test_deleting_a_route_cascades_its_plugins(api: httpx.Client) -> None:
    api.post("/routes", data={"name": "r", "paths": "/a"})
    api.post("/routes/r/plugins", data={"name": "key-auth"})
    assert api.delete("/routes/r").status_code == 204
    assert api.get("/plugins").json()["data"] == []
