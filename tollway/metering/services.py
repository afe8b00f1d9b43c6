"""The usage ledger's node service: the flusher, as the master runs it (see tollway.plugins.node).

The service supervises its flusher thread: a thread that died (whatever killed it) is started
again within SUPERVISE_EVERY seconds, and its counts carry over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from tollway.metering.flusher import FlusherThread
from tollway.plugins.node import NodeContext

log = logging.getLogger(__name__)

STOP_TIMEOUT = 60.0      # seconds the last flush may take at stop
SUPERVISE_EVERY = 1.0    # seconds between two checks that the flusher thread runs
BEHIND_AFTER = 10.0      # seconds a waiting call may wait (at least 10 flush intervals) before metering is behind


class MeteringService:
    """Counts the workers' spool files into the ledger, on a thread of its own (FlusherThread)."""

    name = "metering"

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.settings = node.settings
        self.thread = self._new_thread()
        self.restarts = 0
        self._counted_before = 0   # counts of the threads that died before this one
        self._cut_off_before = 0
        self._errors_before = 0
        self._rows_before = 0
        self._flushes_before = 0
        self._flush_seconds_before = 0.0
        self._supervisor: asyncio.Task[None] | None = None

    def _new_thread(self) -> FlusherThread:
        return FlusherThread(self.settings, self.node.node_id, writer_alive=self.node.writer_alive)

    async def start(self) -> None:
        self.thread.start()
        self._supervisor = asyncio.create_task(self._supervise(), name="metering-supervisor")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        try:
            await self.thread.stop(timeout=STOP_TIMEOUT)
        except Exception:
            log.exception("the last usage flush failed; usage stays in the spool for the next start")

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            if self.thread.alive:
                continue
            dead = self.thread.flusher
            self._counted_before += dead.counted
            self._cut_off_before += dead.cut_off
            self._errors_before += dead.errors_total + 1
            self._rows_before += dead.rows_committed
            self._flushes_before += dead.flushes
            self._flush_seconds_before += dead.flush_seconds
            self.restarts += 1
            log.error("metering: the usage flusher thread died; starting it again (restart %d)", self.restarts)
            try:
                self.thread = self._new_thread()
                self.thread.start()
            except Exception:
                log.exception("metering: could not start the usage flusher again; trying again soon")

    def status(self) -> dict[str, Any]:
        flusher = self.thread.flusher
        try:
            spool_bytes: int | None = flusher.spool_bytes()
        except OSError:
            spool_bytes = None
        now = time.time()
        backlog = flusher.backlog
        lag = max(0.0, now - backlog.oldest_ms / 1000) if backlog.oldest_ms is not None else 0.0
        behind_after = max(BEHIND_AFTER, 10 * self.settings.billable_flush_interval)
        return {
            "calls_committed": self._counted_before + flusher.counted,
            "calls_cut_off": self._cut_off_before + flusher.cut_off,
            "spool_bytes": spool_bytes,
            "spool_alarm_bytes": self.settings.billable_spool_max_bytes,
            "waiting_calls": backlog.calls,
            "waiting_bytes": backlog.bytes,
            "oldest_waiting_seconds": round(lag, 3),
            "behind": lag > behind_after or not self.thread.alive,
            "last_flush_at": flusher.last_success_at,
            "last_flush_seconds": flusher.last_flush_seconds,
            "flushes_total": self._flushes_before + flusher.flushes,
            "flush_seconds_total": round(self._flush_seconds_before + flusher.flush_seconds, 6),
            "rows_committed": self._rows_before + flusher.rows_committed,
            "flush_failures": flusher.failures,
            "errors_total": self._errors_before + flusher.errors_total,
            "last_error": flusher.last_error,
            "flusher_restarts": self.restarts,
            "disk_free_bytes": flusher.disk_free_bytes,
            "disk_alarm": flusher.disk_alarm,
        }


def services(node: NodeContext) -> list[MeteringService]:
    return [MeteringService(node)]
