"""POST/GET/DELETE /consumers/{consumer}/portal_tokens: a token shown once, stored hashed, revocable."""

from __future__ import annotations

import asyncio
import hashlib
import time

from sqlalchemy import select

from tests.admin.conftest import AdminServer
from tollway.config import Settings
from tollway.dashboard import portal_tokens
from tollway.dashboard.tables import portal_tokens as table
from tollway.store.db import Database


def _stored(settings: Settings) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        db = Database.from_settings(settings)
        try:
            async with db.connect() as conn:
                return [(row.id, row.token_hash) for row in await conn.execute(select(table))]
        finally:
            await db.dispose()
    return asyncio.run(read())


def _owner(settings: Settings, token: str, now: int) -> str | None:
    async def read() -> str | None:
        db = Database.from_settings(settings)
        try:
            async with db.connect() as conn:
                return await portal_tokens.consumer_of(conn, token, now)
        finally:
            await db.dispose()
    return asyncio.run(read())


def test_a_token_is_shown_once_stored_hashed_and_names_its_consumer(admin: AdminServer, settings: Settings) -> None:
    consumer = admin.client.post("/consumers", json={"username": "poppy"}).json()
    created = admin.client.post("/consumers/poppy/portal_tokens", json={"ttl": 3600})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["token"].startswith("tlwp_") and body["consumer"] == {"id": consumer["id"]}
    assert body["expires_at"] - body["created_at"] == 3600
    assert body["url"] is None  # portal_listen is off
    assert _stored(settings) == [(body["id"], hashlib.sha256(body["token"].encode()).hexdigest())]
    listed = admin.client.get(f"/consumers/{consumer['id']}/portal_tokens").json()["data"]
    assert [item["id"] for item in listed] == [body["id"]] and "token" not in listed[0]
    now = int(time.time())
    assert _owner(settings, body["token"], now) == consumer["id"]
    assert _owner(settings, body["token"], now + 3600) is None            # expired
    assert _owner(settings, body["token"][:-1] + "x", now) is None         # a guess


def test_delete_revokes_and_a_revoked_token_names_nobody(admin: AdminServer, settings: Settings) -> None:
    admin.client.post("/consumers", json={"username": "poppy"})
    admin.client.post("/consumers", json={"username": "digit"})
    body = admin.client.post("/consumers/poppy/portal_tokens", data={"ttl": "600"}).json()
    assert admin.client.delete(f"/consumers/digit/portal_tokens/{body['id']}").status_code == 404  # not digit's
    assert admin.client.delete(f"/consumers/poppy/portal_tokens/{body['id']}").status_code == 204
    assert admin.client.delete(f"/consumers/poppy/portal_tokens/{body['id']}").status_code == 404
    assert _owner(settings, body["token"], int(time.time())) is None
    assert admin.client.get("/consumers/poppy/portal_tokens").json()["data"] == []


def test_bad_bodies_and_unknown_consumers_answer_in_kongs_shapes(admin: AdminServer) -> None:
    admin.client.post("/consumers", json={"username": "poppy"})
    bad = admin.client.post("/consumers/poppy/portal_tokens", json={"ttl": 5, "color": "red"})
    assert bad.status_code == 400
    assert bad.json()["fields"] == {"color": "unknown field",
                                    "ttl": "expected an integer from 60 to 31622400 (seconds)"}
    assert admin.client.post("/consumers/nobody/portal_tokens", json={}).status_code == 404
    assert admin.client.get("/consumers/nobody/portal_tokens").status_code == 404
    assert admin.client.post("/consumers/poppy/portal_tokens", json={}).json()["expires_at"] > time.time() + 29 * 86400
