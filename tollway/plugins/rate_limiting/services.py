"""The rate-limiting plugin's node services: the workers' figures summed for GET /status, and the
cluster policy's counting on the database (cluster_service.py)."""

from __future__ import annotations

from typing import Any

from tollway.plugins.node import NodeContext
from tollway.plugins.rate_limiting.cluster_service import ClusterCounting
from tollway.plugins.rate_limiting.handler import REPORT_NAME

COUNTS = ("refused", "store_failures", "served_unlimited")


class RateLimitingStatus:
    """GET /status -> rate-limiting: calls refused, failures of the counters' store, calls served
    without limits (fault_tolerant) since the node started, and whether a worker's store fails now."""

    name = "rate-limiting"

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.totals = dict.fromkeys(COUNTS, 0)
        self.failing: dict[str, bool] = {}  # by worker (writer id)

    async def start(self) -> None:
        self.node.on_report(REPORT_NAME, self.add)

    async def stop(self) -> None:
        self.node.on_report(REPORT_NAME, None)

    def add(self, report: Any) -> None:
        """One worker's report (handler.Figures.take)."""
        for name in COUNTS:
            self.totals[name] += int(report.get(name) or 0)
        self.failing[str(report.get("writer"))] = bool(report.get("failing"))

    def status(self) -> dict[str, Any]:
        return {"failing": any(self.failing.values()), **self.totals}


def services(node: NodeContext) -> list[RateLimitingStatus | ClusterCounting]:
    return [RateLimitingStatus(node), ClusterCounting(node)]
