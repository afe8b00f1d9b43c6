"""Every Admin API command of the seed walkthrough, sent as curl sends it (form bodies), answers 201."""

from __future__ import annotations

import httpx

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_form(api: httpx.Client, path: str, body: str) -> httpx.Response:
    return api.post(path, content=body.encode(), headers=FORM)


def test_seed_walkthrough_commands_answer_201(api: httpx.Client) -> None:
    assert post_form(api, "/plugins", "name=billable").status_code == 201
    service = post_form(api, "/services/", "name=mock&url=http://mockbin.org")
    assert service.status_code == 201
    route = post_form(api, "/services/mock/routes", "paths%5B%5D=/mock&name=mock")
    assert route.status_code == 201
    assert post_form(api, "/routes/mock/plugins", "name=key-auth").status_code == 201
    assert post_form(api, "/consumers/", "username=digit").status_code == 201
    assert post_form(api, "/consumers/", "username=poppy").status_code == 201
    poppy = post_form(api, "/consumers/poppy/key-auth/", "key=poppy-secret")
    assert poppy.status_code == 201
    assert post_form(api, "/consumers/digit/key-auth/", "key=digit-secret").status_code == 201

    assert service.json()["host"] == "mockbin.org" and service.json()["port"] == 80
    assert route.json()["paths"] == ["/mock"]
    assert route.json()["service"] == {"id": service.json()["id"]}
    assert poppy.json()["key"] == "poppy-secret"
    plugins = api.get("/routes/mock/plugins").json()["data"]
    assert [p["name"] for p in plugins] == ["key-auth"]
    assert plugins[0]["config"]["key_names"] == ["apikey"]


def test_seed_paths_with_literal_brackets_and_post_without_body(api: httpx.Client) -> None:
    api.post("/services", data={"name": "mock", "url": "http://mockbin.org"})
    assert post_form(api, "/services/mock/routes", "paths[]=/mock&name=mock").status_code == 201
    # curl -X POST with no data: no content type, empty body = an empty object
    answer = api.post("/consumers")
    assert answer.status_code == 400
    assert answer.json()["code"] == 2
