"""The prometheus plugin's node service: it hands the workers' reports to the master's NodeMetrics."""

from __future__ import annotations

from tollway.plugins.node import NodeContext
from tollway.plugins.prometheus.exporter import NODE
from tollway.plugins.prometheus.handler import REPORT_NAME


class ReportListener:
    """Adds every worker's report (tollway.plugins.prometheus.recorder) into exporter.NODE."""

    name = "prometheus"

    def __init__(self, node: NodeContext) -> None:
        self.node = node

    async def start(self) -> None:
        self.node.on_report(REPORT_NAME, NODE.add)

    async def stop(self) -> None:
        self.node.on_report(REPORT_NAME, None)

    def status(self) -> None:
        return None


def services(node: NodeContext) -> list[ReportListener]:
    return [ReportListener(node)]
