"""The rate-limiting plugin's configuration on the Admin API: Kong 3.x's fields, defaults and
errors (kong/plugins/rate-limiting/schema.lua, spec/03-plugins/23-rate-limiting/01-schema_spec.lua
and 03-api_spec.lua), plus Tollway's `tz`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PERIODS_MESSAGE = ("at least one of these fields must be non-empty: 'config.second', 'config.minute', "
                   "'config.hour', 'config.day', 'config.month', 'config.year'")


@pytest.fixture(params=["sqlite"])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # validation runs before the database; stored configs are the plugins' tests'


def _post(api: httpx.Client, config: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"name": "rate-limiting", **extra}
    if config is not None:
        body["config"] = config
    return api.post("/plugins", json=body)


def test_empty_config_is_refused_in_kongs_shape(api: httpx.Client) -> None:
    answer = _post(api)
    assert answer.status_code == 400
    assert answer.json() == {"code": 2, "name": "schema violation", "message": f"schema violation ({PERIODS_MESSAGE})",
                             "fields": {"@entity": [PERIODS_MESSAGE]}}


def test_defaults_are_kongs_and_tollways(api: httpx.Client) -> None:
    answer = _post(api, {"second": 10})
    assert answer.status_code == 201, answer.text
    config = answer.json()["config"]
    assert config == {
        "second": 10, "minute": None, "hour": None, "day": None, "month": None, "year": None,
        "limit_by": "consumer", "header_name": None, "path": None, "policy": "local", "fault_tolerant": True,
        "redis": {"host": None, "port": 6379, "timeout": 2000, "username": None, "password": None, "database": 0,
                  "ssl": False, "ssl_verify": False, "server_name": None},
        "hide_client_headers": False, "error_code": 429, "error_message": "API rate limit exceeded",
        "sync_rate": -1, "tz": "UTC"}


def test_a_longer_periods_limit_may_not_be_lower(api: httpx.Client) -> None:
    answer = _post(api, {"second": 20, "hour": 10})
    assert answer.status_code == 400
    message = "The limit for hour(10.0) cannot be lower than the limit for second(20.0)"
    assert answer.json()["fields"] == {"config": message}
    assert answer.json()["message"] == f"schema violation (config: {message})"
    answer = _post(api, {"second": 10, "minute": 20, "hour": 30, "day": 40, "month": 60, "year": 50})
    assert answer.json()["fields"] == {
        "config": "The limit for year(50.0) cannot be lower than the limit for month(60.0)"}
    assert _post(api, {"second": 10, "minute": 20, "hour": 30, "day": 40, "month": 50, "year": 60}).status_code == 201


def test_limits_are_numbers_greater_than_zero(api: httpx.Client) -> None:
    answer = _post(api, {"minute": 0, "hour": "many"})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"config": {"minute": "value must be greater than 0",
                                                  "hour": "expected a number"}}


def test_header_and_path_are_required_with_their_limit_by(api: httpx.Client) -> None:
    answer = _post(api, {"second": 10, "limit_by": "header"})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {
        "@entity": ["failed conditional validation given value of field 'config.limit_by'"],
        "config": {"header_name": "required field missing"}}
    assert answer.json()["message"] == ("2 schema violations (failed conditional validation given value of field "
                                        "'config.limit_by'; config.header_name: required field missing)")
    answer = _post(api, {"second": 10, "limit_by": "path"})
    assert answer.json()["fields"]["config"] == {"path": "required field missing"}
    header = _post(api, {"second": 10, "limit_by": "header", "header_name": "X-App-Version"})
    assert header.status_code == 201
    api.delete(f"/plugins/{header.json()['id']}")
    assert _post(api, {"second": 10, "limit_by": "path", "path": "/request"}).status_code == 201
    assert _post(api, {"second": 10, "limit_by": "planet"}).json()["fields"] == {
        "config": {"limit_by": "expected one of: consumer, credential, ip, service, header, path"}}


def test_redis_needs_a_host(api: httpx.Client) -> None:
    answer = _post(api, {"second": 10, "policy": "redis", "redis": {"port": 6380}})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {
        "@entity": ["failed conditional validation given value of field 'config.policy'"],
        "config": {"redis": {"host": "required field missing"}}}


def test_nested_redis_fields_and_the_flat_aliases_of_older_kong(api: httpx.Client) -> None:
    nested = _post(api, {"second": 10, "policy": "redis", "redis": {
        "host": "127.0.0.1", "port": 6379, "database": 2, "username": "u", "password": "p", "ssl": False,
        "ssl_verify": False, "timeout": 1100, "server_name": "redis.test"}})
    assert nested.status_code == 201, nested.text
    assert nested.json()["config"]["redis"]["password"] == "[redacted]"
    api.delete(f"/plugins/{nested.json()['id']}")
    flat = _post(api, {"second": 10, "policy": "redis", "redis_host": "127.0.0.1", "redis_port": 6380,
                       "redis_database": 3, "redis_timeout": 1100, "redis_ssl": True})
    assert flat.status_code == 201, flat.text
    redis = flat.json()["config"]["redis"]
    assert (redis["host"], redis["port"], redis["database"], redis["timeout"], redis["ssl"]) == \
        ("127.0.0.1", 6380, 3, 1100, True)
    assert "redis_host" not in flat.json()["config"]


def test_the_flat_aliases_work_in_a_form_and_a_patch(api: httpx.Client) -> None:
    form = api.post("/plugins", data={"name": "rate-limiting", "config.minute": "5", "config.policy": "redis",
                                      "config.redis_host": "localhost", "config.redis_port": "6390"})
    assert form.status_code == 201, form.text
    assert form.json()["config"]["redis"]["port"] == 6390
    patched = api.patch(f"/plugins/{form.json()['id']}", json={"config": {"redis_timeout": 50}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["redis"] == {**form.json()["config"]["redis"], "timeout": 50}


def test_sync_rate_is_kongs_only_with_redis(api: httpx.Client) -> None:
    answer = _post(api, {"second": 10, "sync_rate": 1})
    assert answer.json()["fields"] == {"config": "sync_rate can only be used with the redis policy"}
    answer = _post(api, {"second": 10, "policy": "redis", "redis": {"host": "h"}, "sync_rate": 0.01})
    assert answer.json()["fields"] == {"config": "sync_rate must be greater than 0.02, or -1 to disable"}
    assert _post(api, {"second": 10, "policy": "redis", "redis": {"host": "h"}, "sync_rate": 1}).status_code == 201


def test_cluster_is_accepted_and_an_unknown_policy_refused(api: httpx.Client) -> None:
    answer = _post(api, {"minute": 10, "policy": "cluster"})
    assert answer.status_code == 201
    assert answer.json()["config"]["policy"] == "cluster"
    answer = _post(api, {"minute": 10, "policy": "cassandra"})
    assert answer.status_code == 400
    assert answer.json()["fields"]["config"]["policy"].startswith("expected one of: local, cluster, redis")


def test_tz_is_an_iana_zone(api: httpx.Client) -> None:
    assert _post(api, {"day": 10, "tz": "Europe/Paris"}).json()["config"]["tz"] == "Europe/Paris"
    answer = _post(api, {"day": 10, "tz": "Mars/Olympus"})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"config": {
        "tz": "unknown time zone 'Mars/Olympus': expected an IANA zone such as Europe/Paris"}}


def test_error_code_and_message_are_kept(api: httpx.Client) -> None:
    answer = _post(api, {"second": 1, "error_code": 503, "error_message": "slow down"})
    assert answer.status_code == 201
    assert (answer.json()["config"]["error_code"], answer.json()["config"]["error_message"]) == (503, "slow down")
    assert _post(api, {"second": 1, "error_code": 1000}).json()["fields"] == {
        "config": {"error_code": "expected an HTTP status: an integer between 100 and 599"}}


def test_the_plugin_is_bundled_and_its_schema_served(api: httpx.Client) -> None:
    assert "rate-limiting" in api.get("/plugins/enabled").json()["enabled_plugins"]
    fields = api.get("/schemas/plugins/rate-limiting").json()["fields"]
    config = next(field["config"] for field in fields if "config" in field)
    names = [next(iter(field)) for field in config["fields"]]
    assert names[:6] == ["second", "minute", "hour", "day", "month", "year"] and "tz" in names
