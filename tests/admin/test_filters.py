"""Filtering lists as Kong's specs do: consumers by custom_id (03-consumers_routes_spec) and any
collection by tags (14-tags_spec), and /tags."""

from __future__ import annotations

import httpx

INVALID_OPTIONS = {"code": 11, "name": "invalid options"}


def test_consumers_by_custom_id(api: httpx.Client) -> None:
    carol = api.post("/consumers", json={"username": "carol", "custom_id": "1234"}).json()
    uuid_like = api.post("/consumers", json={"custom_id": "c0ffee00-0000-4000-8000-000000000000"}).json()
    api.post("/consumers", json={"username": "dave", "custom_id": "5678"})
    assert api.get("/consumers", params={"custom_id": "1234"}).json() == {"data": [carol], "next": None}
    answer = api.get("/consumers", params={"custom_id": uuid_like["custom_id"]}).json()
    assert answer == {"data": [uuid_like], "next": None}
    assert api.get("/consumers", params={"custom_id": "none"}).json() == {"data": [], "next": None}
    # paging and tags are ignored with it
    assert api.get("/consumers", params={"custom_id": "1234", "size": "1", "tags": "x"}).json()["data"] == [carol]


def test_an_empty_custom_id_is_400(api: httpx.Client) -> None:
    for query in ("/consumers?custom_id=", "/consumers?custom_id"):
        answer = api.get(query)
        assert answer.status_code == 400 and answer.json() == {"message": "custom_id must be an unempty string"}


def _names(api: httpx.Client, path: str, tags: str) -> list[str]:
    answer = api.get(path, params={"tags": tags})
    assert answer.status_code == 200, answer.text
    return sorted(c["username"] for c in answer.json()["data"])


def test_tags_all_of_or_any_of(api: httpx.Client) -> None:
    for username, tags in (("ab", ["a", "b"]), ("a", ["a"]), ("c", ["c"]), ("spaced", ["corp_ a"])):
        assert api.post("/consumers", json={"username": username, "tags": tags}).status_code == 201
    assert _names(api, "/consumers", "a,b") == ["ab"]
    assert _names(api, "/consumers", "a/c") == ["a", "ab", "c"]
    assert _names(api, "/consumers", "a") == ["a", "ab"]
    assert _names(api, "/consumers", "corp_ a") == ["spaced"]  # a space is a tag's character
    assert _names(api, "/consumers", "''") == []                 # so are quotes


def test_tags_carry_into_the_next_page(api: httpx.Client) -> None:
    for n in range(3):
        api.post("/consumers", json={"username": f"u{n}", "tags": ["t"]})
    page = api.get("/consumers", params={"tags": "t", "size": "2"}).json()
    assert page["next"] == f"/consumers?offset={page['offset']}&tags=t&size=2"
    assert len(api.get(page["next"]).json()["data"]) == 1


def test_bad_tag_filters_are_invalid_options(api: httpx.Client) -> None:
    cases = {"": "cannot be null", "a,b/c": "invalid filter syntax", "a,,b": "invalid filter syntax",
             "%FF": "invalid filter syntax", "a,b,c,d,e,f": "cannot query more than 5 tags"}
    for tags, problem in cases.items():
        answer = api.get(f"/consumers?tags={tags}")  # %FF: a byte that is not UTF-8
        assert answer.status_code == 400, tags
        assert answer.json() == {**INVALID_OPTIONS, "message": f"invalid option (tags: {problem})",
                                 "options": {"tags": problem}}


def test_tags_are_ignored_under_a_parent(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "bob"})
    api.post("/consumers/bob/plugins", json={"name": "billable"})
    assert len(api.get("/consumers/bob/plugins", params={"tags": ""}).json()["data"]) == 1


def test_the_tags_endpoints(api: httpx.Client) -> None:
    svc = api.post("/services", json={"name": "s", "host": "h", "tags": ["team-a", "prod"]}).json()
    bob = api.post("/consumers", json={"username": "bob", "tags": ["team-a"]}).json()
    everything = api.get("/tags").json()
    assert sorted((t["tag"], t["entity_name"], t["entity_id"]) for t in everything["data"]) == [
        ("prod", "services", svc["id"]), ("team-a", "consumers", bob["id"]), ("team-a", "services", svc["id"])]
    assert everything["next"] is None
    team = api.get("/tags/team-a").json()["data"]
    assert {t["entity_name"] for t in team} == {"consumers", "services"}
    first = api.get("/tags", params={"size": 2}).json()
    assert len(first["data"]) == 2 and first["next"]
    assert len(api.get(first["next"]).json()["data"]) == 1
    assert api.get("/tags", params={"tags": ""}).status_code == 200  # ?tags= is ignored there
    answer = api.get("/tags/%FF")
    assert answer.status_code == 400 and "invalid utf-8" in answer.json()["message"]
