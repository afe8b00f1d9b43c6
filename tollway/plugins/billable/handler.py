"""The billable handler: hands every finished call to the worker's usage spool.

When the spool cannot be written, settings.billable_spool_failure decides: `serve` (the default)
serves calls anyway (the spool counts them in `dropped` and raises an alarm); `refuse` answers
503 in the access phase unless the spool is sure to record the call (SpoolWriter.admit: room is
set aside for every call let through and not recorded yet), for operators who must never serve
traffic they cannot bill. The spool probes at most once a second, never per request.

billable is also the gate of plans' hard entitlements (tollway/billing/gate.py): a consumer whose
subscription's plan has hard limits is counted against them in access, exactly, on the counters
the node's workers share (tollway/counters.py); over a limit the call is answered 429 with Kong's
rate-limit headers, and counts nothing. A configuration without hard entitlements leaves the
access phase off the hot path, as it always did.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar, Final

from tollway.billing.gate import UNBOUNDED, Check, EntitlementIndex, limit_headers, reservation, settlement
from tollway.counters import SharedCounters, TableFull
from tollway.metering.spool import SpoolWriter
from tollway.plugins import base
from tollway.plugins.billable.schema import SCHEMA
from tollway.proxy.call import Call as ProxyCall

log = logging.getLogger("tollway.billable")

REFUSED_MESSAGE = "usage metering unavailable; request refused"
LIMITED_MESSAGE = "API rate limit exceeded"  # Kong rate-limiting's words, for a plan's hard limit

# Set in call.ctx for a call this plugin refused in access: never served, so not metered.
REFUSED: Final = "billable.refused"
# Set in call.ctx for a call admitted in access (refuse mode): room for its record is set aside.
ADMITTED: Final = "billable.admitted"
# Set in call.ctx for a call counted against hard entitlements: the checks, settled at the end.
CHECKS: Final = "billable.checks"
INDEX: Final = "billable.entitlements"  # the runtime's index of hard entitlements, per configuration


class Handler(base.Handler):
    """Meters each call; counting happens later, in the master's flusher, off the request path."""

    PRIORITY: ClassVar[int] = SCHEMA["priority"]  # type: ignore[assignment]
    counters: ClassVar[SharedCounters | None] = None  # the node's shared counters (set by init_worker)

    def __init__(self, conf: dict[str, Any], runtime: base.Runtime) -> None:
        super().__init__(conf, runtime)
        settings = runtime.settings
        self.refuse = getattr(settings, "billable_spool_failure", "serve") == "refuse"
        # The runtime, and so the spool, is that of one configuration, as this handler is: typed,
        # its append() is a direct call.
        spool = runtime.spool
        self.spool: SpoolWriter | None = spool if isinstance(spool, SpoolWriter) else None
        self.entitlements = entitlement_index(runtime)

    @classmethod
    def init_worker(cls, worker: Any) -> None:
        # The spool opens its first file now rather than at the first call, so that a spool that
        # cannot be written is known (and refused, with billable_spool_failure = refuse) from the start.
        worker.spool.start()
        Handler.counters = worker.counters

    def phases(self) -> frozenset[str]:
        # Serving through spool failures needs no access phase: leave it off the hot path.
        gated = self.entitlements is not None and self.counters is not None
        return super().phases() if self.refuse or gated else super().phases() - {"access"}

    def access(self, call: base.Call) -> base.Reply | None:
        spool = self.spool
        if self.refuse and spool is not None:
            if not spool.admit():
                spool.refused += 1
                call.ctx[REFUSED] = True
                return base.Reply(503, {"message": REFUSED_MESSAGE})
            call.ctx[ADMITTED] = True
        if self.entitlements is not None and self.counters is not None and call.consumer is not None:
            return self._gate(call)
        return None

    def _gate(self, call: base.Call) -> base.Reply | None:
        """Count the call against its consumer's hard entitlements; 429 when one has no room."""
        counters, index = self.counters, self.entitlements
        assert counters is not None and index is not None and call.consumer is not None
        now = int(time.time())
        checks = index.checks(call.consumer.get("id") or "", (call.service or {}).get("id") or "",
                              call.route.get("id") or "", now)
        if not checks:
            return None
        try:
            admitted, counts = counters.add(*reservation(checks), 1, now)
        except TableFull:
            log.error("hard entitlements not enforced: the shared counter table is full (raise shared_counters_slots)")
            return None
        for name, value in limit_headers(checks, counts, now, rejected=not admitted):
            call.set_response_header(name, value)
        if not admitted:  # counted nowhere; recorded in the ledger with its 429, as reports show refusals
            return base.Reply(429, {"message": LIMITED_MESSAGE})
        call.ctx[CHECKS] = checks
        return None

    def _settle(self, call: base.Call, checks: list[Check]) -> None:
        """Give back what a call that does not count reserved; add a byte meter's bytes."""
        counters = self.counters
        assert counters is not None
        now = int(time.time())
        for key, window_end, delta in settlement(checks, call.status, call.request_bytes, call.response_bytes, now):
            try:
                counters.add([key], [window_end], [UNBOUNDED], delta, now)
            except TableFull:
                log.error("a hard entitlement's counter could not be settled: the shared counter table is full")

    def meter(self, call: base.Call) -> None:
        assert isinstance(call, ProxyCall)  # the proxy's own: its fields are read directly
        context = call.context  # not call.ctx, which would make one for every call
        if context is not None and REFUSED in context:
            return  # never served: not billable, and counted in spool.refused
        if context is not None and CHECKS in context:
            self._settle(call, context[CHECKS])
        spool = self.spool
        if spool is not None:
            spool.append(call)
            if context is not None and ADMITTED in context:
                spool.recorded()


def entitlement_index(runtime: Any) -> EntitlementIndex | None:
    """The hard entitlements of this configuration's subscriptions, compiled once and shared by
    every billable handler (runtime.indexes); None when there are none."""
    indexes: dict[str, Any] = runtime.indexes
    if INDEX not in indexes:
        index = EntitlementIndex.compile(runtime.snapshot.get("subscriptions") or ())
        indexes[INDEX] = index if index.phases else None
    return indexes[INDEX]  # type: ignore[no-any-return]
