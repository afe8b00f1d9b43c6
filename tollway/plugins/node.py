"""What a plugin gets from the node beyond the request path: its lifecycle hooks.

Once per worker process, before it serves, the worker calls `Handler.init_worker(worker)` of every
enabled plugin that has a handler (Kong's init_worker): a place to open connections or shared
structures the plugin's handlers will use.

In the master, a plugin's `services.py` may export `services(node) -> list[NodeService]`: work that
runs beside the proxy for as long as the node runs (a flusher, an exporter, a billing run). The
master starts them once the workers serve, stops them after the workers drained, and adds what
each one's `status()` gives to GET /status under its `name`. The usage ledger's flusher is such a
service of the core (tollway/metering/services.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class WorkerContext(Protocol):
    """The worker process, as `Handler.init_worker` sees it."""

    settings: Any                # tollway.config.Settings
    writer_id: str               # unique per worker process: names its spool files and shared-counter slots
    spool: Any                   # tollway.metering.spool.SpoolWriter: the worker's usage spool
    counters: Any                # tollway.counters.SharedCounters: exact counters shared by the node's workers
    # Figures a plugin keeps for GET /status, named "<plugin>.<figure>": the master shows them under
    # "plugins" -> plugin -> figure, integers summed over the workers, booleans true if any is.
    plugin_stats: dict[str, int | bool]


class NodeContext(Protocol):
    """The node, as a plugin's `services(node)` sees it (implemented by the master)."""

    settings: Any                # tollway.config.Settings
    db: Any                      # tollway.store.db.Database: the master's database
    node_id: str

    def writer_alive(self, writer_id: str) -> bool:
        """Whether a worker (by its writer id) still runs: its spool files may still grow."""


class NodeService(Protocol):
    """Work the master runs for as long as the node runs."""

    name: str                    # its key in GET /status

    async def start(self) -> None:
        """Start; return once it runs (start background tasks or threads here)."""

    async def stop(self) -> None:
        """Stop gracefully: finish what is in hand (a last flush) and return."""

    def status(self) -> Mapping[str, Any] | None:
        """Figures for GET /status, or None to show nothing."""
