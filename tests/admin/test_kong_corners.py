"""Corners of Kong's Admin API specs (spec/02-integration/04-admin_api/): the services `url`
shorthand and its errors, deletes under a parent, references, and what the root endpoint tells
Kong's tools."""

from __future__ import annotations

import uuid

import httpx

NIL = "00000000-0000-0000-0000-000000000000"
PROTOCOLS = "expected one of: http, https"  # Kong lists its grpc, tcp, tls and udp too: Tollway has none


def _upstream(api: httpx.Client, url: str) -> dict[str, object]:
    answer = api.post("/services", json={"url": url})
    assert answer.status_code == 201, answer.text
    return {k: answer.json()[k] for k in ("protocol", "host", "port", "path")}


def test_url_shorthand_as_kong_parses_it(api: httpx.Client) -> None:
    assert _upstream(api, "http://service.test/") == {"protocol": "http", "host": "service.test", "port": 80,
                                                      "path": "/"}
    assert _upstream(api, "https://service.test/") == {"protocol": "https", "host": "service.test", "port": 443,
                                                       "path": "/"}
    assert _upstream(api, "http://example.test:443") == {"protocol": "http", "host": "example.test", "port": 443,
                                                         "path": None}
    assert _upstream(api, "https://example2.test:80/") == {"protocol": "https", "host": "example2.test", "port": 80,
                                                           "path": "/"}
    assert _upstream(api, " http://spaced.test /a ") == {"protocol": "http", "host": "spaced.test", "port": 80,
                                                         "path": "/a"}


def _problems(api: httpx.Client, body: dict[str, object]) -> tuple[str, dict[str, object]]:
    answer = api.post("/services", json=body)
    assert answer.status_code == 400, answer.text
    return answer.json()["message"], answer.json()["fields"]


def test_url_shorthand_errors_name_the_fields(api: httpx.Client) -> None:
    assert _problems(api, {"url": "invalid url"}) == (
        "2 schema violations (host: required field missing; path: should start with: /)",
        {"host": "required field missing", "path": "should start with: /"})
    assert _problems(api, {"url": "example.com"})[1] == {"host": "required field missing",
                                                         "path": "should start with: /"}
    assert _problems(api, {"url": "example.com:8080"})[1] == {
        "protocol": PROTOCOLS, "host": "required field missing", "path": "should start with: /"}
    for blank in ("", " "):
        assert _problems(api, {"url": blank}) == ("schema violation (host: required field missing)",
                                                  {"host": "required field missing"})
    assert _problems(api, {"url": "http://h:abc"})[1] == {"port": "expected an integer"}
    assert _problems(api, {"url": "http://h:99999"})[1] == {"port": "value should be between 0 and 65535"}
    assert _problems(api, {"url": "ftp://h"})[1] == {"protocol": PROTOCOLS}
    assert _problems(api, {})[1] == {"host": "required field missing"}


def test_a_host_is_a_name_or_an_address_without_a_port(api: httpx.Client) -> None:
    assert _problems(api, {"host": "example.com:80"})[1] == {"host": "must not have a port"}
    assert _problems(api, {"host": "exa mple"})[1] == {"host": "invalid value: exa mple"}
    for host in ("127.0.0.1", "::1", "my_host.internal"):
        assert api.post("/services", json={"host": host}).status_code == 201, host


def test_deletes_at_the_top_level_are_204_under_a_parent_404(api: httpx.Client) -> None:
    for path in ("/services/nothing", f"/services/{NIL}", "/consumers/nobody", f"/plugins/{NIL}"):
        assert api.delete(path).status_code == 204, path
    bob = api.post("/consumers", json={"username": "bob"}).json()
    alice = api.post("/consumers", json={"username": "alice"}).json()
    bobs = api.post("/consumers/bob/plugins", json={"name": "billable"}).json()
    assert api.delete(f"/consumers/bob/plugins/{NIL}").status_code == 404
    assert api.delete(f"/consumers/nobody/plugins/{bobs['id']}").status_code == 404
    assert api.delete(f"/consumers/alice/plugins/{bobs['id']}").status_code == 404
    assert api.get(f"/plugins/{bobs['id']}").json()["consumer"] == {"id": bob["id"]}
    assert api.delete(f"/consumers/{bob['id']}/plugins/{bobs['id']}").status_code == 204
    assert alice["id"] != bob["id"]


def test_a_missing_reference_is_404_and_deleting_one_is_405(api: httpx.Client) -> None:
    api.post("/routes", json={"name": "alone", "paths": ["/a"]})
    assert api.get("/routes/alone/service").status_code == 404
    assert api.delete("/routes/alone/service").status_code == 404
    assert api.get("/routes/nothing/service").status_code == 404
    api.post("/services", json={"name": "s", "host": "h"})
    api.post("/services/s/routes", json={"name": "linked", "paths": ["/b"]})
    answer = api.delete("/routes/linked/service")
    assert answer.status_code == 405 and answer.json() == {"message": "Method not allowed"}


def test_reference_errors_in_kongs_words(api: httpx.Client) -> None:
    ghost = str(uuid.uuid4())
    answer = api.post("/routes", json={"paths": ["/a"], "service": {"id": ghost}})
    assert answer.status_code == 400 and answer.json() == {
        "code": 4, "name": "foreign key violation",
        "message": f"the foreign key '{{id=\"{ghost}\"}}' does not reference an existing 'services' entity.",
        "fields": {"service": {"id": ghost}}}
    problem = "the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity"
    answer = api.post("/routes", json={"paths": ["/a"], "service": {"name": "non-existing"}})
    assert answer.json() == {"code": 13, "name": "foreign keys unresolved",
                             "message": f"foreign key unresolved (service.name: {problem})",
                             "fields": {"service": {"name": problem}}}
    taken = api.post("/consumers", json={"username": "u"}).json()["id"]
    answer = api.post("/consumers", json={"id": taken, "username": "v"})
    assert answer.status_code == 400 and answer.json() == {
        "code": 3, "name": "primary key violation",
        "message": f"primary key violation on key '{{id=\"{taken}\"}}'", "fields": {"id": taken}}


def test_unknown_methods_are_405(api: httpx.Client) -> None:
    # (an unknown verb, Kong's GEEEET, is refused earlier: the HTTP parser answers 400)
    for method, path in (("POST", "/"), ("DELETE", "/consumers"), ("PURGE", "/consumers")):
        answer = api.request(method, path)
        assert answer.status_code == 405 and answer.json() == {"message": "Method not allowed"}, method


def test_the_root_endpoint_tells_kongs_tools_what_they_read(api: httpx.Client) -> None:
    root = api.get("/").json()
    major, minor, _patch = (int(part) for part in root["version"].split("."))  # decK: a semantic version, 3.x
    assert (major, minor) >= (3, 0)
    assert root["tagline"] == "Welcome to kong" and root["edition"] == "community"
    assert root["tollway"]["tagline"] == "Welcome to tollway" and root["tollway"]["version"]
    configuration = root["configuration"]
    assert configuration["database"] in ("sqlite", "postgres")  # not "off": decK may sync
    assert configuration["portal"] is False and configuration["rbac"] == "off"
    assert configuration["role"] == "traditional"
    assert {"key-auth", "acl", "billable"} <= set(root["plugins"]["available_on_server"])
    assert root["plugins"]["enabled_in_cluster"] == []
    assert isinstance(root["pids"]["master"], int)
    api.post("/plugins", json={"name": "acl", "config": {"allow": ["a"]}})
    assert api.get("/").json()["plugins"]["enabled_in_cluster"] == ["acl"]
    status = api.get("/status").json()
    assert status["database"] == {"reachable": True} and "connections_handled" in status["server"]
