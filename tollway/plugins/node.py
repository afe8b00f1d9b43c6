"""What a plugin gets from the node beyond the request path: its lifecycle hooks.

Once per worker process, before it serves, the worker calls `Handler.init_worker(worker)` of every
enabled plugin that has a handler (Kong's init_worker): a place to open connections or shared
structures the plugin's handlers will use. A plugin that counts in the worker and shows the sums
in the master registers `worker.reports[name] = take`: every second (and once more as the worker
drains) the worker sends what `take()` gives, unless None, to the master, which hands it to the
callback a node service registered with `node.on_report(name, callback)`.

In the master, a plugin's `services.py` may export `services(node) -> list[NodeService]`: work that
runs beside the proxy for as long as the node runs (a flusher, an exporter, a billing run). The
master starts them once the workers serve, stops them after the workers drained, and adds what
each one's `status()` gives to GET /status under its `name`. The usage ledger's flusher is such a
service of the core (tollway/metering/services.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class WorkerContext(Protocol):
    """The worker process, as `Handler.init_worker` sees it."""

    settings: Any                # tollway.config.Settings
    writer_id: str               # unique per worker process: names its spool files and shared-counter slots
    spool: Any                   # tollway.metering.spool.SpoolWriter: the worker's usage spool
    counters: Any                # tollway.counters.SharedCounters: exact counters shared by the node's workers
    reports: dict[str, Callable[[], Any]]  # name -> what to send the master every second (None: nothing)


class NodeContext(Protocol):
    """The node, as a plugin's `services(node)` sees it (implemented by the master)."""

    settings: Any                # tollway.config.Settings
    db: Any                      # tollway.store.db.Database: the master's database
    node_id: str

    def writer_alive(self, writer_id: str) -> bool:
        """Whether a worker (by its writer id) still runs: its spool files may still grow."""

    def on_report(self, name: str, callback: Callable[[Any], None] | None) -> None:
        """Hand every worker report of that name to callback(data), on the master's loop (None: stop)."""


class NodeService(Protocol):
    """Work the master runs for as long as the node runs."""

    name: str                    # its key in GET /status

    async def start(self) -> None:
        """Start; return once it runs (start background tasks or threads here)."""

    async def stop(self) -> None:
        """Stop gracefully: finish what is in hand (a last flush) and return."""

    def status(self) -> Mapping[str, Any] | None:
        """Figures for GET /status, or None to show nothing."""
