"""Billing's node service: the billing run (invoice_run.py), every `invoice_run_interval` seconds.

On a cluster every node runs the service, and one at a time does the work: a run starts only
under the billing lock (a PostgreSQL advisory lock; SQLite is one node). A run that fails is
logged and tried again at the next interval: each invoice is written whole or not at all, so a
failure midway loses nothing but time. The loop catches every failure, so it never dies of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from tollway.billing import invoice_run
from tollway.plugins.node import NodeContext

log = logging.getLogger(__name__)


class BillingRunService:
    """Drafts, refreshes and finalizes invoices in the background of the master."""

    name = "billing"

    def __init__(self, node: NodeContext, clock: invoice_run.Clock = time.time) -> None:
        self.node = node
        self.clock = clock
        self.runs = 0
        self.failures = 0
        self.last_run_at: float | None = None
        self.last_error: str | None = None
        self.last_report: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="billing-run")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> bool:
        """One run if this node gets the lock; whether it ran."""
        async with invoice_run.billing_lock(self.node.db, wait=False) as held:
            if not held:
                return False
            report = await invoice_run.run(self.node.db, self.node.settings, self.clock)
        self.runs += 1
        self.last_run_at = self.clock()
        self.last_report = {key: value for key, value in report.to_json().items() if key != "planned"}
        if report.created or report.finalized:
            log.info("billing run: %d drafts created, %d refreshed, %d finalized", len(report.created),
                     len(report.refreshed), len(report.finalized))
        return True

    async def _loop(self) -> None:
        interval = max(float(self.node.settings.invoice_run_interval), 1.0)
        while True:
            try:
                await self.run_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("billing run failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)

    def status(self) -> dict[str, Any]:
        return {"runs": self.runs, "failures": self.failures, "last_run_at": self.last_run_at,
                "last_error": self.last_error, "last_run": self.last_report}


def services(node: NodeContext) -> list[BillingRunService]:
    return [BillingRunService(node)]
