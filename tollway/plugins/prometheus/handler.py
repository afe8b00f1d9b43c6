"""The prometheus handler: counts each finished call into the worker's Recorder, in the log phase.

Labels are Kong's: service is the service's name (else its host), route the route's name (else
its id), consumer the consumer's username when per_consumer is on (else ""), source `service`
when the upstream answered and `kong` when the gateway or a plugin did. A call without a service
is not counted, as in Kong. Latencies, in milliseconds:

  request   from the request head's arrival to the end of the response
  upstream  from the request sent to the upstream to the upstream's response head (Kong's
            X-Kong-Upstream-Latency); none when the upstream did not answer
  kong      request minus upstream: what the gateway and its plugins added
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from tollway.plugins import base
from tollway.plugins.prometheus.recorder import (
    KONG_LATENCY_BUCKETS,
    UPSTREAM_LATENCY_BUCKETS,
    Recorder,
    new_histogram,
    observe,
)
from tollway.plugins.prometheus.schema import SCHEMA

REPORT_NAME = "prometheus"  # the name of the worker's reports to the master (tollway.plugins.node)


class Handler(base.Handler):
    """Counts calls per Kong's labels; the master sums the workers' counts."""

    PRIORITY: ClassVar[int] = SCHEMA["priority"]  # type: ignore[assignment]
    recorder: ClassVar[Recorder] = Recorder()  # the worker's (init_worker hands it to the worker's reports)

    def __init__(self, conf: dict[str, Any], runtime: base.Runtime) -> None:
        super().__init__(conf, runtime)
        self.per_consumer = bool(conf.get("per_consumer"))
        self.status_codes = bool(conf.get("status_code_metrics"))
        self.latencies = bool(conf.get("latency_metrics"))
        self.bandwidth = bool(conf.get("bandwidth_metrics"))

    @classmethod
    def init_worker(cls, worker: Any) -> None:
        worker.reports[REPORT_NAME] = cls.recorder.take

    def phases(self) -> frozenset[str]:
        # A configuration that counts nothing per request stays off the hot path.
        counts = self.status_codes or self.latencies or self.bandwidth
        return super().phases() if counts else super().phases() - {"log"}

    def log(self, call: base.Call) -> None:
        service = call.service
        if service is None:
            return
        route = call.route
        labels: tuple[str, str] = (service.get("name") or service.get("host") or "",
                                   route.get("name") or route.get("id") or "")
        consumer = ""
        if self.per_consumer and call.consumer is not None:
            consumer = call.consumer.get("username") or ""
        recorder = self.recorder
        # The proxy's Call (tollway.proxy.call) has the cycle's times: 0.0 until they happen.
        first_byte_at: float = call.first_byte_at  # type: ignore[attr-defined]
        if self.status_codes:
            request_key = (*labels, call.status, "service" if first_byte_at else "kong", consumer)
            requests = recorder.requests
            requests[request_key] = requests.get(request_key, 0) + 1
        if self.bandwidth:
            bandwidth = recorder.bandwidth
            if call.request_bytes > 0:
                ingress_key = (*labels, "ingress", consumer)
                bandwidth[ingress_key] = bandwidth.get(ingress_key, 0) + call.request_bytes
            if call.response_bytes > 0:
                egress_key = (*labels, "egress", consumer)
                bandwidth[egress_key] = bandwidth.get(egress_key, 0) + call.response_bytes
        if self.latencies:
            request_ms = (time.time() - call.started_at) * 1000
            upstream_ms = 0.0
            if first_byte_at:
                upstream_ms = (first_byte_at - call.sent_at) * 1000  # type: ignore[attr-defined]
                self._observe(recorder.upstream, labels, UPSTREAM_LATENCY_BUCKETS, upstream_ms)
            self._observe(recorder.request, labels, UPSTREAM_LATENCY_BUCKETS, request_ms)
            self._observe(recorder.kong, labels, KONG_LATENCY_BUCKETS, max(0.0, request_ms - upstream_ms))

    @staticmethod
    def _observe(histograms: dict[tuple[str, str], list[float]], labels: tuple[str, str],
                 bounds: tuple[int, ...], value: float) -> None:
        histogram = histograms.get(labels)
        if histogram is None:
            histogram = histograms[labels] = new_histogram(bounds)
        observe(histogram, bounds, value)
