"""Shared helpers of the metering tests: finished calls, a ledger on the test database, spool writers."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from tollway.config import Settings
from tollway.metering.spool import SpoolWriter
from tollway.proxy.call import Call
from tollway.store.db import Database

T = TypeVar("T")

ALICE = {"id": "11111111-1111-4111-8111-111111111111", "username": "alice", "custom_id": "cust-a"}
BOB = {"id": "22222222-2222-4222-8222-222222222222", "username": "bob", "custom_id": None}
SERVICE = {"id": "33333333-3333-4333-8333-333333333333", "name": "mock", "host": "127.0.0.1"}
ROUTE = {"id": "44444444-4444-4444-8444-444444444444", "name": "mock", "paths": ["/mock"]}
ROUTE2 = {"id": "55555555-5555-4555-8555-555555555555", "name": "other", "paths": ["/other"]}

migration = importlib.import_module("tollway.metering.migrations.000_base")


_UNSET: Any = object()


def finished_call(started_at: float, consumer: dict[str, Any] | None = _UNSET, service: dict[str, Any] | None = _UNSET,
                  route: dict[str, Any] | None = None, status: int = 200, request_bytes: int = 100,
                  response_bytes: int = 1000) -> Call:
    """A finished call as the billable handler gets it (the proxy's Call); alice on the mock service by default."""
    call = Call(b"GET", "/", "", [], "127.0.0.1", started_at, 0.0)
    call.consumer = dict(ALICE) if consumer is _UNSET else consumer
    call.service = dict(SERVICE) if service is _UNSET else service
    call.route = dict(ROUTE) if route is None else route
    call.status = status
    call.request_bytes = request_bytes
    call.response_bytes = response_bytes
    return call


def at(text: str) -> float:
    """Epoch seconds of an ISO 8601 instant."""
    return datetime.fromisoformat(text).timestamp()


async def open_ledger(settings: Settings) -> Database:
    """A Database on the test's fresh database, with the ledger migration applied."""
    db = Database.from_settings(settings)
    async with db.engine.begin() as conn:
        await conn.run_sync(migration.up)
    return db


def with_ledger(settings: Settings, body: Callable[[Database], Awaitable[T]]) -> T:
    """Run `body(db)` in a fresh event loop with the ledger created; dispose of the engine after."""

    async def main() -> T:
        db = await open_ledger(settings)
        try:
            return await body(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def write_calls(settings: Settings, calls: list[finished_call], writer_id: str = "w1") -> None:
    """Append the calls to a fresh spool writer and close it (its files are then finished)."""
    with SpoolWriter(settings.spool_dir, writer_id) as writer:
        for call in calls:
            writer.append(call)
