"""The prometheus handler: counts each finished call into the worker's Recorder.

It counts in the meter phase, where billable records the call, rather than in Kong's log phase:
the counts are those of /billable (the same calls, status and bytes), and the call costs half
as much (scheduling the log phase after the response costs about as much as the counting; see
docs/prometheus.md). Counting adds about a microsecond before the response's last byte.

Labels are Kong's: service is the service's name (else its host), route the route's name (else
its id), consumer the consumer's username when per_consumer is on (else ""), source `service`
when the upstream answered and `kong` when the gateway or a plugin did. A call without a service
is not counted, as in Kong. Latencies, in milliseconds:

  request   from the request head's arrival to the end of the response
  upstream  from the request sent to the upstream to the upstream's response head (Kong's
            X-Kong-Upstream-Latency); none when the upstream did not answer
  kong      request minus upstream: what the gateway and its plugins added

Compiled with the hot path (setup.py); its cost per call is in docs/prometheus.md.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from tollway.plugins import base
from tollway.plugins.prometheus.recorder import Recorder, Tally
from tollway.plugins.prometheus.schema import SCHEMA
from tollway.proxy.call import Call as ProxyCall

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
        worker.reports[REPORT_NAME] = Handler.recorder.take

    def phases(self) -> frozenset[str]:
        # A configuration that counts nothing per request stays off the hot path.
        counts = self.status_codes or self.latencies or self.bandwidth
        return super().phases() if counts else super().phases() - {"meter"}

    def meter(self, call: base.Call) -> None:
        assert isinstance(call, ProxyCall)  # the proxy's own: its cycle's times are read directly
        service = call.service
        if service is None:
            return
        route = call.route
        consumer = ""
        if self.per_consumer and call.consumer is not None:
            consumer = call.consumer.get("username") or ""
        tallies = Handler.recorder.tallies
        route_id: str = route.get("id") or ""
        by_consumer = tallies.get(route_id)
        if by_consumer is None:
            by_consumer = tallies[route_id] = {}
        tally = by_consumer.get(consumer)
        if tally is None:
            tally = by_consumer[consumer] = Tally(service.get("name") or service.get("host") or "",
                                                  route.get("name") or route_id, consumer)
        answered = call.first_byte_at > 0.0  # 0.0 until the upstream's response head arrives
        if self.status_codes:
            code = call.status * 2 + 1 if answered else call.status * 2
            codes = tally.codes
            codes[code] = codes.get(code, 0) + 1
        if self.bandwidth:
            tally.ingress += call.request_bytes
            tally.egress += call.response_bytes
        if self.latencies:
            request_ms = (time.time() - call.started_at) * 1000.0  # the last write is still to come
            upstream_ms = 0.0
            if answered:
                upstream_ms = (call.first_byte_at - call.sent_at) * 1000.0
                tally.upstream.observe(upstream_ms)
            tally.request.observe(request_ms)
            tally.kong.observe(max(0.0, request_ms - upstream_ms))
