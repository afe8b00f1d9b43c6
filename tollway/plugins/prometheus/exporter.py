"""The master's side: the workers' reports added up, and GET /metrics rendered from them.

`NODE` is the master process's NodeMetrics (as prometheus_client's REGISTRY is a process's):
the plugin's node service feeds it the workers' reports (services.py), the /metrics routes of
the Admin API and of the status listener read it. A scrape builds the text with
prometheus_client from these sums and from the node's status (GET /status's figures): nothing
of it runs on the proxy's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from tollway import __version__
from tollway.plugins.prometheus.recorder import BUCKETS, BandwidthKey, LatencyKey, RequestKey

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BANDWIDTH = "kong_bandwidth_bytes"
CONNECTION_STATES = ("accepted", "active", "handled", "reading", "writing", "waiting")
_HISTOGRAM_NAMES = {
    "kong": ("kong_kong_latency_ms", "Latency added by Kong and enabled plugins for each service/route"),
    "upstream": ("kong_upstream_latency_ms", "Latency added by upstream response for each service/route"),
    "request": ("kong_request_latency_ms", "Total latency incurred during requests for each service/route"),
}


class NodeMetrics:
    """The sums of every worker's reports since the master started."""

    def __init__(self) -> None:
        self.requests: dict[RequestKey, int] = {}
        self.bandwidth: dict[BandwidthKey, int] = {}
        self.latency: dict[str, dict[LatencyKey, list[float]]] = {name: {} for name in BUCKETS}
        self.reports = 0

    def add(self, report: Mapping[str, Any]) -> None:
        """Add one worker's report (tollway.plugins.prometheus.recorder.Recorder.take)."""
        for *labels, count in report.get("requests") or ():
            key: Any = tuple(labels)
            self.requests[key] = self.requests.get(key, 0) + int(count)
        for *labels, count in report.get("bandwidth") or ():
            key = tuple(labels)
            self.bandwidth[key] = self.bandwidth.get(key, 0) + int(count)
        for name, rows in (report.get("latency") or {}).items():
            sums = self.latency.get(name)
            if sums is None:
                continue
            for service, route, histogram in rows:
                total = sums.get((service, route))
                if total is None:
                    sums[(service, route)] = list(histogram)
                else:
                    for index, value in enumerate(histogram):
                        total[index] += value
        self.reports += 1

    def families(self) -> Iterator[Metric]:
        """The per-request metric families (none for a metric nothing was counted in)."""
        if self.requests:
            family = CounterMetricFamily("kong_http_requests_total",
                                         "HTTP status codes per consumer/service/route in Kong",
                                         labels=("service", "route", "code", "source", "consumer"))
            for (service, route, code, source, consumer), count in sorted(self.requests.items()):
                family.add_metric((service, route, str(code), source, consumer), count)
            yield family
        for name, sums in self.latency.items():
            if not sums:
                continue
            metric, documentation = _HISTOGRAM_NAMES[name]
            histograms = HistogramMetricFamily(metric, documentation, labels=("service", "route"))
            bounds = BUCKETS[name]
            for (service, route), histogram in sorted(sums.items()):
                buckets: list[tuple[str, float]] = []
                cumulative = 0.0
                for bound, in_bucket in zip((*bounds, "+Inf"), histogram[:-1], strict=True):
                    cumulative += in_bucket
                    buckets.append((bound if bound == "+Inf" else floatToGoString(bound), cumulative))
                histograms.add_metric((service, route), buckets, histogram[-1])
            yield histograms
        if self.bandwidth:
            # Kong's counter has no _total suffix, which prometheus_client's counters always add:
            # made untyped here, typed counter again by render().
            bandwidth = Metric(BANDWIDTH, "Total bandwidth (ingress/egress) throughput in bytes", "unknown")
            for (service, route, direction, consumer), count in sorted(self.bandwidth.items()):
                bandwidth.add_sample(BANDWIDTH, {"service": service, "route": route, "direction": direction,
                                                 "consumer": consumer}, count)
            yield bandwidth


NODE = NodeMetrics()


def node_families(status: Mapping[str, Any], database_reachable: bool, now: float | None = None) -> Iterator[Metric]:
    """Kong's node metrics and Tollway's own, from GET /status's figures."""
    node_id = str(status.get("node_id") or "")
    server = status.get("server") or {}
    connections = GaugeMetricFamily("kong_nginx_connections_total", "Number of connections by subsystem",
                                    labels=("node_id", "subsystem", "state"))
    for state in CONNECTION_STATES:
        connections.add_metric((node_id, "http", state), int(server.get(f"connections_{state}") or 0))
    connections.add_metric((node_id, "http", "total"), int(server.get("total_requests") or 0))
    yield connections
    requests = GaugeMetricFamily("kong_nginx_requests_total", "Number of requests total",
                                 labels=("node_id", "subsystem"))
    requests.add_metric((node_id, "http"), int(server.get("total_requests") or 0))
    yield requests
    yield GaugeMetricFamily("kong_datastore_reachable", "Datastore reachable from Kong, 0 is unreachable",
                            value=1 if database_reachable else 0)
    info = GaugeMetricFamily("kong_node_info", "Kong Node metadata information", labels=("node_id", "version"))
    info.add_metric((node_id, __version__), 1)
    yield info
    workers = GaugeMetricFamily("tollway_workers", "Proxy worker processes running")
    workers.add_metric((), len(status.get("workers") or ()))
    yield workers
    metering = status.get("metering")
    if isinstance(metering, Mapping):
        yield from _metering_families(metering, time.time() if now is None else now)


def _metering_families(metering: Mapping[str, Any], now: float) -> Iterator[Metric]:
    """The usage ledger's flusher, as GET /status shows it under `metering`."""
    def gauge(name: str, documentation: str, value: Any) -> Iterator[Metric]:
        if value is not None:
            yield GaugeMetricFamily(name, documentation, value=float(value))

    def counter(name: str, documentation: str, value: Any) -> Iterator[Metric]:
        if value is not None:
            yield CounterMetricFamily(name, documentation, value=float(value))

    yield from gauge("tollway_spool_bytes", "Bytes in the usage spool files of this node", metering.get("spool_bytes"))
    yield from gauge("tollway_spool_waiting_bytes", "Bytes of spooled usage not yet in the ledger (measured while "
                     "flushes fail)", metering.get("waiting_bytes"))
    yield from gauge("tollway_spool_oldest_waiting_seconds", "Age of the oldest spooled call not yet in the ledger",
                     metering.get("oldest_waiting_seconds"))
    last_flush_at = metering.get("last_flush_at")
    if last_flush_at is not None:
        yield from gauge("tollway_flush_lag_seconds", "Seconds since the last successful flush of usage",
                         max(0.0, now - float(last_flush_at)))
        yield from gauge("tollway_flush_last_success_timestamp_seconds", "When usage was last flushed to the ledger",
                         last_flush_at)
    yield from gauge("tollway_flush_duration_seconds", "How long the last flush of usage took",
                     metering.get("last_flush_seconds"))
    yield from counter("tollway_flush_seconds", "Seconds spent flushing usage, in total",
                       metering.get("flush_seconds_total"))
    yield from counter("tollway_flushes", "Flushes of usage done", metering.get("flushes_total"))
    yield from counter("tollway_ledger_calls_committed", "Calls committed to the usage ledger",
                       metering.get("calls_committed"))
    yield from counter("tollway_ledger_rows_committed", "Usage rows written to the ledger (upserts)",
                       metering.get("rows_committed"))
    yield from counter("tollway_flush_errors", "Failed flushes and other errors of the flusher",
                       metering.get("errors_total"))
    yield from gauge("tollway_flush_failing", "Flushes failed in a row", metering.get("flush_failures"))
    behind = metering.get("behind")
    if behind is not None:
        yield from gauge("tollway_metering_behind", "1 when usage waits longer than it should", 1 if behind else 0)


class _Families:
    """A prometheus_client collector over families made for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(node: NodeMetrics, status: Mapping[str, Any], database_reachable: bool) -> bytes:
    """GET /metrics's body: Prometheus' text format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*node.families(), *node_families(status, database_reachable)]))  # type: ignore[arg-type]
    return generate_latest(registry).replace(b"# TYPE %s untyped\n" % BANDWIDTH.encode(),
                                             b"# TYPE %s counter\n" % BANDWIDTH.encode(), 1)
