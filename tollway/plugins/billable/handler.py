"""The billable handler: hands every finished call to the worker's usage spool."""

from __future__ import annotations

from typing import ClassVar

from tollway.plugins import base
from tollway.plugins.billable.schema import SCHEMA


class Handler(base.Handler):
    """Meters each call; counting happens later, in the master's flusher, off the request path."""

    PRIORITY: ClassVar[int] = SCHEMA["priority"]  # type: ignore[assignment]

    def meter(self, call: base.Call) -> None:
        spool = self.runtime.spool
        if spool is not None:
            spool.append(call)
