"""Bodies, pagination, tags, unknown paths and methods, and the node information endpoints."""

from __future__ import annotations

import httpx


def test_malformed_json_is_400(api: httpx.Client) -> None:
    answer = api.post("/consumers", content=b"{nope", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json() == {"message": "Cannot parse JSON body"}


def test_unsupported_content_type_is_415(api: httpx.Client) -> None:
    answer = api.post("/consumers", content=b"username=x", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415 and answer.json() == {"message": "Unsupported media type"}


def test_multipart_bodies(api: httpx.Client) -> None:
    answer = api.post("/routes", files={"paths[1]": (None, "/a"), "paths[2]": (None, "/b"),
                                        "strip_path": (None, "false")})
    assert answer.status_code == 201
    assert answer.json()["paths"] == ["/a", "/b"] and answer.json()["strip_path"] is False


def test_empty_form_value_is_null(api: httpx.Client) -> None:
    answer = api.post("/services", data={"name": "s", "host": "h", "path": ""})
    assert answer.status_code == 201 and answer.json()["path"] is None


def test_unknown_path_and_method(api: httpx.Client) -> None:
    assert api.get("/nothing/here").status_code == 404
    assert api.get("/nothing/here").json() == {"message": "Not found"}
    answer = api.delete("/consumers")
    assert answer.status_code == 405 and answer.json() == {"message": "Method not allowed"}


def test_pagination_is_stable_and_next_is_a_path(api: httpx.Client) -> None:
    for n in range(5):
        api.post("/consumers", data={"username": f"u{n}"})
    seen: list[str] = []
    path: str | None = "/consumers?size=2"
    pages = 0
    while path:
        body = api.get(path).json()
        seen += [c["username"] for c in body["data"]]
        path = body["next"]
        pages += 1
        if path:
            assert path.startswith("/consumers?offset=") and "size=2" in path
    assert pages == 3 and sorted(seen) == [f"u{n}" for n in range(5)] and len(set(seen)) == 5


def test_invalid_size_and_offset(api: httpx.Client) -> None:
    assert api.get("/consumers?size=abc").json() == {
        "code": 9, "name": "invalid size", "message": "size must be a number"}
    answer = api.get("/consumers?size=1001")
    assert answer.status_code == 400
    assert answer.json()["message"] == "size must be an integer between 1 and 1000"
    answer = api.get("/consumers?offset=!!!")
    assert answer.status_code == 400 and answer.json()["code"] == 7 and answer.json()["name"] == "invalid offset"


def test_tags_filter_both_or_either(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "ab", "tags": ["a", "b"]})
    api.post("/consumers", json={"username": "a", "tags": ["a"]})
    api.post("/consumers", json={"username": "c", "tags": ["c"]})

    def names(tags: str) -> list[str]:
        return sorted(c["username"] for c in api.get("/consumers", params={"tags": tags}).json()["data"])

    assert names("a,b") == ["ab"]
    assert names("b/c") == ["ab", "c"]
    assert names("a") == ["a", "ab"]


def test_root_status_and_plugin_info(api: httpx.Client) -> None:
    root = api.get("/").json()
    assert root["plugins"]["enabled_in_cluster"] == []
    assert set(root["plugins"]["available_on_server"]) == {"key-auth", "acl", "rate-limiting", "prometheus",
                                                           "billable"}
    assert root["configuration"]["pg_password"] in ("", "******")
    assert root["node_id"]
    status = api.get("/status").json()
    assert status["database"] == {"reachable": True}
    assert status["server"]["total_requests"] == 42 and "connections_active" in status["server"]
    assert api.get("/plugins/enabled").json() == {
        "enabled_plugins": ["key-auth", "acl", "rate-limiting", "prometheus", "billable"]}
    fields = api.get("/schemas/plugins/key-auth").json()["fields"]
    config = next(f["config"] for f in fields if "config" in f)
    assert {"key_names": {"type": "array", "elements": {"type": "string", "header_name": True}, "required": True,
                          "default": ["apikey"],
                          "description": "header or query argument names in which the key is looked up"}
            } in config["fields"]
    assert api.get("/schemas/plugins/nope").status_code == 404
    assert "/consumers/{parent}/key-auth" in api.get("/endpoints").json()["data"]


def test_on_change_runs_after_each_write(admin) -> None:  # type: ignore[no-untyped-def]
    admin.client.post("/consumers", data={"username": "x"})
    admin.client.post("/consumers", data={"username": "x"})  # 409: no change
    admin.client.get("/consumers")
    assert len(admin.changes) == 1
