"""key-auth's node service: expired credentials are deleted once a minute.

Reads never return an expired credential (the Dao filters them) and workers stop accepting its
key by their own clock, so the sweep only keeps the table small; it changes no configuration
and bumps no version. Every node of a cluster sweeps; a DELETE that finds nothing is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tollway.errors import StoreError
from tollway.plugins.key_auth.daos import KEYAUTH_CREDENTIALS
from tollway.plugins.node import NodeContext
from tollway.store.entities.dao import Dao

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0  # seconds


class ExpiredKeySweeper:
    """Deletes expired key-auth credentials every `every` seconds while the node runs."""

    name = "key-auth"

    def __init__(self, node: NodeContext, every: float = SWEEP_EVERY) -> None:
        self.db = node.db
        self.every = every
        self.dao = Dao(KEYAUTH_CREDENTIALS)  # the ttl column is the same whether keys are hashed
        self.deleted = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="key-auth expired sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def status(self) -> None:
        return None

    async def sweep(self) -> int:
        """Delete the expired credentials now; how many there were."""
        async with self.db.begin() as conn:
            count = await self.dao.purge_expired(conn)
        self.deleted += count
        return count

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.sweep()
            except StoreError as exc:  # the database is away: the next sweep tries again
                log.warning("key-auth: could not delete expired credentials: %s", exc)


def services(node: NodeContext) -> list[ExpiredKeySweeper]:
    return [ExpiredKeySweeper(node)]
