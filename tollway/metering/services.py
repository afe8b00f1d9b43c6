"""The usage ledger's node service: the flusher, as the master runs it (see tollway.plugins.node)."""

from __future__ import annotations

import logging
from typing import Any

from tollway.metering.flusher import FlusherThread
from tollway.plugins.node import NodeContext

log = logging.getLogger(__name__)

STOP_TIMEOUT = 60.0  # seconds the last flush may take at stop


class MeteringService:
    """Counts the workers' spool files into the ledger, on a thread of its own (FlusherThread)."""

    name = "metering"

    def __init__(self, node: NodeContext) -> None:
        self.settings = node.settings
        self.thread = FlusherThread(node.settings, node.node_id, writer_alive=node.writer_alive)

    async def start(self) -> None:
        self.thread.start()

    async def stop(self) -> None:
        try:
            await self.thread.stop(timeout=STOP_TIMEOUT)
        except Exception:
            log.exception("the last usage flush failed; usage stays in the spool for the next start")

    def status(self) -> dict[str, Any]:
        flusher = self.thread.flusher
        try:
            spool_bytes: int | None = flusher.spool_bytes()
        except OSError:
            spool_bytes = None
        return {
            "calls_committed": flusher.counted,
            "calls_cut_off": flusher.cut_off,
            "spool_bytes": spool_bytes,
            "spool_alarm_bytes": self.settings.billable_spool_max_bytes,
        }


def services(node: NodeContext) -> list[MeteringService]:
    return [MeteringService(node)]
