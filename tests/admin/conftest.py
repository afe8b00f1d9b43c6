"""An Admin API served by uvicorn on a loopback port, on a freshly bootstrapped database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from tests.conftest import free_port, wait_for_port
from tollway.admin.app import create_app
from tollway.config import Settings
from tollway.store import migrations
from tollway.store.db import Database


async def _bootstrap(settings: Settings) -> None:
    db = Database.from_settings(settings)
    try:
        await migrations.bootstrap(db, settings)
    finally:
        await db.dispose()


@dataclass
class AdminServer:
    """A running Admin API: `client` talks to it, `changes` counts on_change() calls."""

    client: httpx.Client
    port: int
    changes: list[int] = field(default_factory=list)


class _Serving(threading.Thread):
    def __init__(self, settings: Settings, port: int, changes: list[int]) -> None:
        super().__init__(daemon=True)
        self.settings, self.port, self.changes = settings, port, changes
        self.server: uvicorn.Server | None = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        db = Database.from_settings(self.settings)
        app = create_app(self.settings, db, on_change=lambda: self.changes.append(1),
                         status_extra=lambda: {"server": {"total_requests": 42}})
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve()
        finally:
            await db.dispose()


def serve(settings: Settings) -> Iterator[AdminServer]:
    port = free_port()
    changes: list[int] = []
    thread = _Serving(settings, port, changes)
    thread.start()
    wait_for_port(port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield AdminServer(client, port, changes)
    assert thread.server is not None
    thread.server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def admin(settings: Settings) -> Iterator[AdminServer]:
    """The Admin API of a bootstrapped node with every bundled plugin enabled."""
    asyncio.run(_bootstrap(settings))
    yield from serve(settings)


@pytest.fixture
def api(admin: AdminServer) -> httpx.Client:
    return admin.client
