"""The acls entity and the acl plugin's configuration on the Admin API, as Kong's
spec/03-plugins/18-acl/01-api_spec.lua and the plugin's schema describe them."""

from __future__ import annotations

import uuid

import httpx

NIL = "00000000-0000-0000-0000-000000000000"


def _consumer(api: httpx.Client, username: str) -> dict[str, str]:
    answer = api.post("/consumers", json={"username": username})
    assert answer.status_code == 201
    return answer.json()  # type: ignore[no-any-return]


def test_create_under_a_consumer_with_tags(api: httpx.Client) -> None:
    bob = _consumer(api, "bob")
    answer = api.post("/consumers/bob/acls", json={"group": "test-group", "tags": ["tag1", "tag2"]})
    assert answer.status_code == 201
    acl = answer.json()
    assert acl["group"] == "test-group" and acl["consumer"] == {"id": bob["id"]} and acl["tags"] == ["tag1", "tag2"]
    assert api.post("/consumers/nobody/acls", json={"group": "g"}).status_code == 404


def test_a_group_is_required_and_a_string(api: httpx.Client) -> None:
    _consumer(api, "bob")
    answer = api.post("/consumers/bob/acls", json={})
    assert answer.status_code == 400 and answer.json()["fields"] == {"group": "required field missing"}
    ident = str(uuid.uuid4())
    for method in ("PUT", "PATCH"):
        if method == "PATCH":
            ident = api.post("/consumers/bob/acls", json={"group": "g"}).json()["id"]
        answer = api.request(method, f"/consumers/bob/acls/{ident}", json={"group": 123})
        assert answer.status_code == 400 and answer.json()["fields"] == {"group": "expected a string"}


def test_at_the_top_level_a_consumer_is_required(api: httpx.Client) -> None:
    for answer in (api.post("/acls", json={"group": "test-group"}),
                   api.put(f"/acls/{uuid.uuid4()}", json={"group": "test-group"})):
        assert answer.status_code == 400
        assert answer.json()["message"] == "schema violation (consumer: required field missing)"


def test_a_group_is_unique_per_consumer_only(api: httpx.Client) -> None:
    anna, jack = _consumer(api, "anna"), _consumer(api, "jack")
    assert api.post("/consumers/jack/acls", json={"group": "foo"}).status_code == 201
    created = api.put("/consumers/anna/acls/foo", json={})  # PUT by group name creates that group
    assert created.status_code == 200 and created.json()["group"] == "foo"
    assert api.get("/consumers/anna/acls/foo").json()["consumer"] == {"id": anna["id"]}
    assert api.get("/consumers/jack/acls/foo").json()["consumer"] == {"id": jack["id"]}
    answer = api.post("/consumers/anna/acls", json={"group": "foo"})
    assert answer.status_code == 409
    assert answer.json() == {
        "code": 5, "name": "unique constraint violation",
        "message": f"UNIQUE violation detected on '{{consumer={{id=\"{anna['id']}\"}},group=\"foo\"}}'",
        "fields": {"consumer": {"id": anna["id"]}, "group": "foo"}}
    assert api.get("/acls/foo").status_code == 404  # a group names an ACL only under its consumer


def test_another_consumers_acl_is_not_found_under_this_one(api: httpx.Client) -> None:
    _consumer(api, "anna"), _consumer(api, "jack")
    jacks = api.post("/consumers/jack/acls", json={"group": "admin"}).json()
    assert api.get(f"/consumers/anna/acls/{jacks['id']}").status_code == 404
    assert api.patch(f"/consumers/anna/acls/{jacks['id']}", json={"group": "x"}).status_code == 404
    assert api.delete(f"/consumers/anna/acls/{jacks['id']}").status_code == 404
    assert api.get(f"/consumers/jack/acls/{jacks['id']}").status_code == 200


def test_deleting_what_is_not_there_under_a_consumer_is_404(api: httpx.Client) -> None:
    _consumer(api, "bob")
    assert api.delete("/consumers/bob/acls/blah").status_code == 404
    assert api.delete(f"/consumers/bob/acls/{NIL}").status_code == 404
    assert api.delete(f"/acls/{NIL}").status_code == 204  # the top level answers 204, as Kong's
    api.post("/consumers/bob/acls", json={"group": "blah"})
    assert api.delete("/consumers/bob/acls/blah").status_code == 204
    assert api.get("/consumers/bob/acls/blah").status_code == 404


def test_top_level_reads_the_consumer_and_pages(api: httpx.Client) -> None:
    bob = _consumer(api, "bob")
    for n in range(5):
        api.post("/consumers/bob/acls", json={"group": f"g{n}"})
    first = api.get("/acls", params={"size": 3}).json()
    assert len(first["data"]) == 3 and first["offset"] and first["next"].startswith("/acls?offset=")
    last = api.get(first["next"]).json()
    assert len(last["data"]) == 2 and last["next"] is None and "offset" not in last
    assert len(api.get("/acls/").json()["data"]) == 5
    acl = first["data"][0]
    assert api.get(f"/acls/{acl['id']}").json() == acl
    assert api.get(f"/acls/{acl['id']}/consumer").json() == bob


def test_deleting_a_consumer_deletes_its_groups(api: httpx.Client) -> None:
    _consumer(api, "bob")
    api.post("/consumers/bob/acls", json={"group": "admin"})
    assert api.delete("/consumers/bob").status_code == 204
    assert api.get("/acls").json() == {"data": [], "next": None}


def test_plugin_needs_exactly_one_of_allow_and_deny(api: httpx.Client) -> None:
    answer = api.post("/plugins", json={"name": "acl"})
    assert answer.status_code == 400
    assert answer.json()["message"] == (
        "schema violation (at least one of these fields must be non-empty: 'config.allow', 'config.deny')")
    answer = api.post("/plugins", json={"name": "acl", "config": {"allow": ["a"], "deny": ["b"]}})
    assert answer.json()["fields"] == {
        "@entity": ["exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"]}
    created = api.post("/plugins", json={"name": "acl", "config": {"deny": ["b"]}})
    assert created.status_code == 201
    assert created.json()["config"] == {"allow": None, "deny": ["b"], "hide_groups_header": False,
                                        "always_use_authenticated_groups": False, "include_consumer_groups": False}


def test_plugin_is_not_for_a_consumer_and_has_no_consumer_groups(api: httpx.Client) -> None:
    bob = _consumer(api, "bob")
    answer = api.post("/plugins", json={"name": "acl", "consumer": {"id": bob["id"]}, "config": {"allow": ["a"]}})
    assert answer.status_code == 400 and answer.json()["fields"] == {"consumer": "value must be null"}
    answer = api.post("/plugins", json={"name": "acl", "config": {"allow": ["a"], "include_consumer_groups": True}})
    assert answer.json()["fields"] == {"config": {"include_consumer_groups": "expected one of: false"}}
