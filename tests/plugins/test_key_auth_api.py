"""key-auth credentials and configuration on the Admin API, as Kong's spec/03-plugins/09-key-auth
describes them, with the ttl: a credential expires, then answers 404 and stops authenticating."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.plugins.conftest import Gateway
from tests.proxy.conftest import ProxyHarness, consumer, credential, plugin, request, route, service, snapshot

NIL = "00000000-0000-0000-0000-000000000000"


def test_keys_given_or_generated_with_tags(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "bob"})
    given = api.post("/consumers/bob/key-auth", json={"key": "1234", "tags": ["tag1", "tag2"]})
    assert given.status_code == 201 and given.json()["key"] == "1234" and given.json()["tags"] == ["tag1", "tag2"]
    assert given.json()["ttl"] is None
    first, second = (api.post("/consumers/bob/key-auth", json={}).json()["key"] for _ in range(2))
    assert first != second and len(first) == 32


def test_key_must_be_a_string_and_unique(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "bob"})
    created = api.post("/consumers/bob/key-auth", json={"key": "1234"}).json()
    answer = api.patch(f"/consumers/bob/key-auth/{created['id']}", json={"key": 123})
    assert answer.status_code == 400 and answer.json()["fields"] == {"key": "expected a string"}
    answer = api.post("/consumers/bob/key-auth", json={"key": "1234"})
    assert answer.status_code == 409 and answer.json()["fields"] == {"key": "1234"}


def test_top_level_credentials_need_a_consumer(api: httpx.Client) -> None:
    for answer in (api.post("/key-auths", json={"key": "k"}), api.put(f"/key-auths/{uuid.uuid4()}", json={})):
        assert answer.status_code == 400
        assert answer.json()["message"] == "schema violation (consumer: required field missing)"


def test_another_consumers_credential_is_not_found(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "alice"})
    api.post("/consumers", json={"username": "bob"})
    bobs = api.post("/consumers/bob/key-auth", json={"key": "bob-key"}).json()
    assert api.get(f"/consumers/alice/key-auth/{bobs['id']}").status_code == 404
    assert api.put(f"/consumers/alice/key-auth/{bobs['id']}", json={"key": "x"}).status_code == 404
    assert api.get(f"/consumers/bob/key-auth/{bobs['id']}").status_code == 200


def test_deleting_a_missing_credential_under_a_consumer_is_404(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "bob"})
    assert api.delete("/consumers/bob/key-auth/blah").status_code == 404
    assert api.delete(f"/consumers/bob/key-auth/{NIL}").status_code == 404
    assert api.delete(f"/key-auths/{NIL}").status_code == 204


def test_key_names_are_header_names(api: httpx.Client) -> None:
    answer = api.post("/plugins", json={"name": "key-auth", "config": {"key_names": ["hello\\world"]}})
    assert answer.status_code == 400
    assert answer.json()["fields"] == {"config": {"key_names": [
        "bad header name 'hello\\world', allowed characters are A-Z, a-z, 0-9, '_', and '-'"]}}
    answer = api.post("/plugins", json={"name": "key-auth", "config": {"key_names": ["ok", ""]}})
    assert answer.json()["fields"] == {"config": {"key_names": [None, "length must be at least 1"]}}
    created = api.post("/plugins", json={"name": "key-auth", "config": {"key_names": ["hello-world", "x_api_key"]}})
    assert created.status_code == 201


def test_a_ttl_counts_down_and_a_patch_without_one_keeps_it(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "bob"})
    created = api.post("/consumers/bob/key-auth", json={"key": "k", "ttl": 1000})
    assert created.status_code == 201 and created.json()["ttl"] == 1000
    ident = created.json()["id"]
    assert 998 <= api.get(f"/key-auths/{ident}").json()["ttl"] <= 1000
    assert 998 <= api.patch(f"/key-auths/{ident}", json={"tags": ["t"]}).json()["ttl"] <= 1000
    assert 998 <= api.get(f"/key-auths/{ident}").json()["ttl"] <= 1000
    assert api.patch(f"/key-auths/{ident}", json={"ttl": 50}).json()["ttl"] == 50
    assert 48 <= api.get(f"/key-auths/{ident}").json()["ttl"] <= 50
    assert api.patch(f"/key-auths/{ident}", json={"ttl": 0}).json()["ttl"] is None  # 0: never expires
    assert api.get(f"/key-auths/{ident}").json()["ttl"] is None
    answer = api.post("/consumers/bob/key-auth", json={"key": "k2", "ttl": -1})
    assert answer.status_code == 400 and answer.json()["fields"] == {"ttl": "value should be between 0 and 100000000"}


def _wait_until_gone(api: httpx.Client, path: str, timeout: float = 5.0) -> float:
    """Seconds until `path` answers 404 (a ttl runs out: there is no event to await but the clock)."""
    started = time.monotonic()
    while api.get(path).status_code != 404:
        assert time.monotonic() - started < timeout, f"{path} still there after {timeout}s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_an_expired_credential_is_404_and_stops_authenticating(gateway: Gateway) -> None:
    api = gateway.admin
    gateway.post("/consumers", {"username": "bob"})
    expiring = gateway.post("/consumers/bob/key-auth", {"key": "short-lived", "ttl": 1})
    gateway.post("/consumers/bob/key-auth", {"key": "lasting"})
    gateway.post("/services/echo/routes", {"name": "r", "paths": ["/r"]})
    gateway.post("/routes/r/plugins", {"name": "key-auth"})
    gateway.sync()
    assert gateway.call("/r", {"apikey": "short-lived"}).status == 200
    waited = _wait_until_gone(api, f"/consumers/bob/key-auth/{expiring['id']}")
    assert waited >= 0.5
    assert [c["id"] for c in api.get("/key-auths").json()["data"]] != [expiring["id"]]
    assert len(api.get("/consumers/bob/key-auth").json()["data"]) == 1
    assert api.get("/key-auths/short-lived").status_code == 404
    # the proxy refuses it by its own clock, with no new configuration and no database
    deadline = time.monotonic() + 3
    while gateway.call("/r", {"apikey": "short-lived"}).status == 200:
        assert time.monotonic() < deadline, "the proxy still accepts an expired key"
        time.sleep(0.1)
    assert gateway.call("/r", {"apikey": "short-lived"}).status == 401
    assert gateway.call("/r", {"apikey": "lasting"}).status == 200
    # an expired key is free again: the write purges it
    assert api.post("/consumers/bob/key-auth", json={"key": "short-lived"}).status_code == 201
    gateway.sync()
    assert gateway.call("/r", {"apikey": "short-lived"}).status == 200


def test_the_worker_compares_expires_at_with_its_clock(tmp_path, echo_upstream) -> None:  # type: ignore[no-untyped-def]
    """What the snapshot carries decides, for a key already seen as well as a new one."""
    from tests.proxy.conftest import make_proxy_settings

    harness = ProxyHarness(make_proxy_settings(tmp_path))
    try:
        svc = service(echo_upstream)
        rte = route(svc, ["/r"])
        bob = consumer("bob")
        fresh = {**credential(bob, "fresh"), "expires_at": int(time.time()) + 100}
        stale = {**credential(bob, "stale"), "expires_at": int(time.time()) - 5}
        forever = {**credential(bob, "forever"), "expires_at": None}
        harness.apply(snapshot([svc], [rte], consumers=[bob], credentials=[fresh, stale, forever],
                               plugins=[plugin("key-auth", route=rte)]))
        for _ in range(2):  # the second time, from the keys already seen
            assert request(harness.port, "GET", "/r", headers={"apikey": "fresh"}).status == 200
            assert request(harness.port, "GET", "/r", headers={"apikey": "forever"}).status == 200
            assert request(harness.port, "GET", "/r", headers={"apikey": "stale"}).status == 401
    finally:
        harness.close()


@pytest.mark.parametrize(("body", "as_form", "problem"), [
    ({"key": ""}, True, "length must be at least 1"),
    ({"key": ""}, False, "length must be at least 1"),
    ({"key": None}, False, "required field missing"),
])
def test_an_update_never_empties_a_key(api: httpx.Client, body: dict[str, Any], as_form: bool, problem: str) -> None:
    api.post("/consumers", json={"username": "kate"})
    created = api.post("/consumers/kate/key-auth", json={"key": "kate-secret"}).json()
    stored = api.get(f"/key-auths/{created['id']}").json()["key"]  # its hash, shown from now on
    for path in (f"/key-auths/{created['id']}", f"/consumers/kate/key-auth/{created['id']}"):
        answer = api.patch(path, data=body) if as_form else api.patch(path, json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["fields"] == {"key": problem}
    assert api.get(f"/key-auths/{created['id']}").json()["key"] == stored
