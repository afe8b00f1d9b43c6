"""key-auth keys hashed at rest: shown once, found by key or hash, unique, and only hashes reach workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from tests.admin.conftest import AdminServer, _bootstrap, serve
from tests.proxy.conftest import proxy, recorder, request  # noqa: F401  (fixtures)
from tollway.config import Settings
from tollway.plugins.key_auth.daos import keyauth_credentials
from tollway.plugins.key_auth.keys import hash_key, is_hashed
from tollway.store.db import Database
from tollway.store.snapshot import load_snapshot


def _stored_keys(settings: Settings) -> list[str]:
    async def read() -> list[str]:
        db = Database.from_settings(settings)
        try:
            async with db.connect() as conn:
                return list(await conn.scalars(select(keyauth_credentials.c.key)))
        finally:
            await db.dispose()
    return asyncio.run(read())


def _snapshot(settings: Settings) -> dict[str, Any]:
    async def load() -> dict[str, Any]:
        db = Database.from_settings(settings)
        try:
            return await load_snapshot(db, settings)
        finally:
            await db.dispose()
    return asyncio.run(load())


def _insert_readable(settings: Settings, consumer_id: str, key: str) -> None:
    """A key stored before hashing was turned on."""
    async def write() -> None:
        db = Database.from_settings(settings)
        try:
            async with db.begin() as conn:
                await conn.execute(insert(keyauth_credentials).values(
                    id="0b0b0b0b-0000-4000-8000-000000000001", created_at=1, updated_at=1,
                    consumer_id=consumer_id, key=key))
        finally:
            await db.dispose()
    asyncio.run(write())


def test_a_key_is_shown_once_then_only_its_hash(api: httpx.Client, settings: Settings) -> None:
    api.post("/consumers", json={"username": "poppy"})
    generated = api.post("/consumers/poppy/key-auth").json()
    raw = generated["key"]
    assert len(raw) == 32 and not is_hashed(raw)
    shown = api.get(f"/key-auths/{generated['id']}").json()["key"]
    assert shown == hash_key(raw) and shown.startswith("sha256:") and len(shown) == 71
    assert [c["key"] for c in api.get("/consumers/poppy/key-auth").json()["data"]] == [shown]
    assert _stored_keys(settings) == [shown]  # a copy of the database yields no usable key


def test_a_key_in_a_url_is_found_by_its_hash(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "poppy"})
    created = api.post("/consumers/poppy/key-auth", json={"key": "open-sesame"}).json()
    assert created["key"] == "open-sesame"
    for path in ("/consumers/poppy/key-auth/open-sesame", "/key-auths/open-sesame",
                 f"/key-auths/{hash_key('open-sesame')}"):
        answer = api.get(path)
        assert answer.status_code == 200 and answer.json()["id"] == created["id"], path
    assert api.get("/key-auths/open-sesame/consumer").json()["username"] == "poppy"
    assert api.get("/key-auths/open").status_code == 404


def test_keys_stay_unique_hashed(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "a"})
    api.post("/consumers", json={"username": "b"})
    assert api.post("/consumers/a/key-auth", json={"key": "same"}).status_code == 201
    taken = api.post("/consumers/b/key-auth", json={"key": "same"})
    assert taken.status_code == 409 and taken.json()["name"] == "unique constraint violation"
    assert api.post("/consumers/b/key-auth", json={"key": hash_key("same")}).status_code == 409


def test_put_and_patch_show_a_key_they_set_and_the_hash_otherwise(api: httpx.Client) -> None:
    api.post("/consumers", json={"username": "poppy"})
    put = api.put("/consumers/poppy/key-auth/new-key", json={})
    assert put.status_code == 200 and put.json()["key"] == "new-key"
    untouched = api.patch("/consumers/poppy/key-auth/new-key", json={"ttl": 5}).json()
    assert untouched["key"] == hash_key("new-key") and untouched["ttl"] == 5
    rekeyed = api.patch("/consumers/poppy/key-auth/new-key", json={"key": "newer"}).json()
    assert rekeyed["key"] == "newer"
    assert api.get("/key-auths/newer").status_code == 200 and api.get("/key-auths/new-key").status_code == 404
    assert api.delete("/key-auths/newer").status_code == 204 and api.get("/key-auths").json()["data"] == []


def test_readable_keys_from_before_hashing_keep_working(api: httpx.Client, settings: Settings) -> None:
    consumer = api.post("/consumers", json={"username": "old"}).json()
    _insert_readable(settings, consumer["id"], "legacy-key")
    assert api.get("/key-auths/legacy-key").json()["key"] == "legacy-key"
    assert api.post("/consumers/old/key-auth", json={"key": "legacy-key"}).status_code == 409
    assert [c["key"] for c in _snapshot(settings)["keyauth_credentials"]] == [hash_key("legacy-key")]


@pytest.fixture
def readable(settings: Settings) -> Iterator[AdminServer]:
    plain = settings.with_overrides(keyauth_hash_keys=False)
    asyncio.run(_bootstrap(plain))
    yield from serve(plain)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_with_hashing_off_keys_are_stored_readable_but_workers_get_hashes(
        readable: AdminServer, settings: Settings) -> None:
    api = readable.client
    api.post("/consumers", json={"username": "poppy"})
    api.post("/consumers/poppy/key-auth", json={"key": "plain"})
    assert api.get("/key-auths/plain").json()["key"] == "plain"
    assert _stored_keys(settings) == ["plain"]
    plain = settings.with_overrides(keyauth_hash_keys=False)
    assert [c["key"] for c in _snapshot(plain)["keyauth_credentials"]] == [hash_key("plain")]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_the_proxy_authenticates_a_key_it_only_knows_by_hash(
        api: httpx.Client, settings: Settings, proxy, echo_upstream: int) -> None:  # noqa: F811
    service = api.post("/services", json={"name": "echo", "url": f"http://127.0.0.1:{echo_upstream}"}).json()
    api.post("/services/echo/routes", json={"name": "mock", "paths": ["/mock"]})
    api.post("/services/echo/plugins", json={"name": "key-auth"})
    api.post("/consumers", json={"username": "poppy"})
    raw = api.post("/consumers/poppy/key-auth").json()["key"]
    snapshot = _snapshot(settings)
    assert all(is_hashed(c["key"]) for c in snapshot["keyauth_credentials"])
    assert raw not in str(snapshot)
    proxy.apply(snapshot)
    assert request(proxy.port, "GET", "/mock", headers={"apikey": raw}).status == 200
    assert request(proxy.port, "GET", f"/mock?apikey={raw}").status == 200
    assert request(proxy.port, "GET", "/mock", headers={"apikey": hash_key(raw)}).status == 401
    assert request(proxy.port, "GET", "/mock", headers={"apikey": raw[:-1]}).status == 401
    assert service["id"]
