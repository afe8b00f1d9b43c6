"""Plugins: config validated against the plugin's schema, uniqueness per scope, enabled names only."""

from __future__ import annotations

import httpx


def test_config_defaults_and_typed_form_values(api: httpx.Client) -> None:
    answer = api.post("/plugins", data={"name": "key-auth", "config.key_names": "x-key",
                                        "config.hide_credentials": "true"})
    assert answer.status_code == 201
    config = answer.json()["config"]
    assert config["key_names"] == ["x-key"] and config["hide_credentials"] is True
    assert config["key_in_header"] is True and config["anonymous"] is None
    assert answer.json()["enabled"] is True


def test_patch_merges_config(api: httpx.Client) -> None:
    plugin = api.post("/plugins", json={"name": "key-auth", "config": {"key_names": ["a"]}}).json()
    patched = api.patch(f"/plugins/{plugin['id']}", json={"config": {"hide_credentials": True}}).json()
    assert patched["config"]["key_names"] == ["a"] and patched["config"]["hide_credentials"] is True


def test_bad_config_lists_every_problem(api: httpx.Client) -> None:
    answer = api.post("/plugins", json={"name": "key-auth",
                                        "config": {"key_names": "x", "hide_credentials": 3, "nope": 1}})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"config": {"key_names": "expected an array",
                                                  "hide_credentials": "expected a boolean",
                                                  "nope": "unknown field"}}
    assert answer.json()["message"] == (
        "3 schema violations (config.hide_credentials: expected a boolean; "
        "config.key_names: expected an array; config.nope: unknown field)")


def test_unknown_plugin_is_not_enabled(api: httpx.Client) -> None:
    answer = api.post("/plugins", data={"name": "foo"})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {
        "name": "plugin 'foo' not enabled; add it to the 'plugins' configuration property"}


def test_key_auth_may_not_be_set_on_a_consumer(api: httpx.Client) -> None:
    api.post("/consumers", data={"username": "c"})
    answer = api.post("/consumers/c/plugins", data={"name": "key-auth"})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"consumer": "value must be null"}


def test_one_plugin_per_name_and_scope(api: httpx.Client) -> None:
    route = api.post("/routes", data={"name": "r", "paths": "/a"}).json()
    assert api.post("/routes/r/plugins", data={"name": "key-auth"}).status_code == 201
    answer = api.post("/plugins", json={"name": "key-auth", "route": {"id": route["id"]}})
    assert answer.status_code == 409
    assert answer.json()["fields"] == {"name": "key-auth", "route": {"id": route["id"]},
                                       "service": None, "consumer": None}
    assert answer.json()["message"] == (
        f"UNIQUE violation detected on '{{consumer=null,name=\"key-auth\",route={{id=\"{route['id']}\"}},"
        "service=null}'")
    assert api.post("/plugins", data={"name": "key-auth"}).status_code == 201
    assert api.post("/plugins", data={"name": "key-auth"}).status_code == 409


def test_plugins_created_under_a_service_get_it(api: httpx.Client) -> None:
    service = api.post("/services", data={"name": "s", "host": "h"}).json()
    plugin = api.post("/services/s/plugins", data={"name": "billable"}).json()
    assert plugin["service"] == {"id": service["id"]}
    assert [p["id"] for p in api.get("/services/s/plugins").json()["data"]] == [plugin["id"]]
    assert api.get(f"/plugins/{plugin['id']}").json() == plugin
