"""The billable handler: hands every finished call to the worker's usage spool.

When the spool cannot be written, settings.billable_spool_failure decides: `serve` (the default)
serves calls anyway (the spool counts them in `dropped` and raises an alarm); `refuse` answers
503 in the access phase unless the spool is sure to record the call (SpoolWriter.admit: room is
set aside for every call let through and not recorded yet), for operators who must never serve
traffic they cannot bill. The spool probes at most once a second, never per request.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from tollway.metering.spool import SpoolWriter
from tollway.plugins import base
from tollway.plugins.billable.schema import SCHEMA
from tollway.proxy.call import Call as ProxyCall

REFUSED_MESSAGE = "usage metering unavailable; request refused"

# Set in call.ctx for a call this plugin refused in access: never served, so not metered.
REFUSED: Final = "billable.refused"
# Set in call.ctx for a call admitted in access (refuse mode): room for its record is set aside.
ADMITTED: Final = "billable.admitted"


class Handler(base.Handler):
    """Meters each call; counting happens later, in the master's flusher, off the request path."""

    PRIORITY: ClassVar[int] = SCHEMA["priority"]  # type: ignore[assignment]

    def __init__(self, conf: dict[str, Any], runtime: base.Runtime) -> None:
        super().__init__(conf, runtime)
        settings = runtime.settings
        self.refuse = getattr(settings, "billable_spool_failure", "serve") == "refuse"
        # The runtime, and so the spool, is that of one configuration, as this handler is: typed,
        # its append() is a direct call.
        spool = runtime.spool
        self.spool: SpoolWriter | None = spool if isinstance(spool, SpoolWriter) else None

    @classmethod
    def init_worker(cls, worker: Any) -> None:
        # The spool opens its first file now rather than at the first call, so that a spool that
        # cannot be written is known (and refused, with billable_spool_failure = refuse) from the start.
        worker.spool.start()

    def phases(self) -> frozenset[str]:
        # Serving through spool failures needs no access phase: leave it off the hot path.
        return super().phases() if self.refuse else super().phases() - {"access"}

    def access(self, call: base.Call) -> base.Reply | None:
        spool = self.spool
        if self.refuse and spool is not None:
            if not spool.admit():
                spool.refused += 1
                call.ctx[REFUSED] = True
                return base.Reply(503, {"message": REFUSED_MESSAGE})
            call.ctx[ADMITTED] = True
        return None

    def meter(self, call: base.Call) -> None:
        assert isinstance(call, ProxyCall)  # the proxy's own: its fields are read directly
        context = call.context  # not call.ctx, which would make one for every call
        if context is not None and REFUSED in context:
            return  # never served: not billable, and counted in spool.refused
        spool = self.spool
        if spool is not None:
            spool.append(call)
            if context is not None and ADMITTED in context:
                spool.recorded()
