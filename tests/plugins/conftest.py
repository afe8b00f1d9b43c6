"""A gateway for plugin specifications: the Admin API on a fresh database and a proxy that serves
the configuration snapshot read from it, as a worker gets it from the master."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin.conftest import _bootstrap, admin, api, serve  # noqa: F401 (admin, api: fixtures)
from tests.plugins.redis_server import RedisServer
from tests.proxy.conftest import ProxyHarness, Response, request
from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.snapshot import load_snapshot


@dataclass
class Gateway:
    """`admin` writes the configuration; `sync()` hands it to the proxy; `call()` goes through it."""

    settings: Settings
    admin: httpx.Client
    proxy: ProxyHarness
    upstream: int

    def sync(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            db = Database.from_settings(self.settings)
            try:
                return await load_snapshot(db, self.settings)
            finally:
                await db.dispose()

        snapshot = asyncio.run(read())
        self.proxy.apply(snapshot)
        return snapshot

    def call(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return request(self.proxy.port, "GET", path, headers=headers)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """An Admin API POST that must succeed; the entity created."""
        answer = self.admin.post(path, json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()  # type: ignore[no-any-return]


@pytest.fixture
def gateway(settings: Settings, echo_upstream: int) -> Iterator[Gateway]:
    asyncio.run(_bootstrap(settings))
    proxy = ProxyHarness(settings)
    try:
        for admin in serve(settings):
            admin.client.post("/services", json={"name": "echo", "url": f"http://127.0.0.1:{echo_upstream}"})
            yield Gateway(settings, admin.client, proxy, echo_upstream)
    finally:
        proxy.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (tests/plugins/redis_server.py), closed after it."""
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.close()
