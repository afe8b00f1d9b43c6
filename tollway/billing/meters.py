"""Meters: what the usage ledger counts for billing, per consumer.

A meter aggregates the ledger's rows of one consumer: `count` sums calls (`requests`), `sum`
sums the bytes of `field` (`request_bytes` or `response_bytes`). Its filter narrows the rows to
a service, a route and statuses, each optional (none: every row); statuses are codes ("404") or
classes ("2xx"), any of which matches.

    {"name": "api-calls", "aggregation": "count", "field": null,
     "service": {"id": ...}, "route": null, "status": ["2xx", "3xx"]}

`Meter` is the compiled form, the same for the master (SQL over the ledger) and, in phase 2, for
a worker deciding which entitlements a call counts against (`matches_target`, `matches_status`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AGGREGATIONS = ("count", "sum")
SUM_FIELDS = ("request_bytes", "response_bytes")
STATUS_FORMAT = "expected a status code (100 to 599) or class (1xx to 5xx)"

Errors = dict[str, Any]


@dataclass(frozen=True)
class StatusRange:
    """A status code or class as the half-open range [lo, hi) it covers."""

    lo: int
    hi: int

    def __contains__(self, status: int) -> bool:
        return self.lo <= status < self.hi

    def text(self) -> str:
        return f"{self.lo // 100}xx" if self.hi - self.lo == 100 and self.lo % 100 == 0 else str(self.lo)


def parse_status(value: object) -> StatusRange:
    """"2xx" -> [200, 300), "404" (or 404) -> [404, 405); ValueError(STATUS_FORMAT) otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
            return StatusRange(int(text[0]) * 100, int(text[0]) * 100 + 100)
        if len(text) == 3 and text.isdigit() and 100 <= int(text) <= 599:
            return StatusRange(int(text), int(text) + 1)
    raise ValueError(STATUS_FORMAT)


@dataclass(frozen=True)
class Meter:
    """A compiled meter. `statuses` None counts every status."""

    name: str
    aggregation: str = "count"
    field: str | None = None
    service_id: str | None = None
    route_id: str | None = None
    statuses: tuple[StatusRange, ...] | None = None

    @property
    def column(self) -> str:
        """The ledger column it sums."""
        return "requests" if self.aggregation == "count" else str(self.field)

    def matches_target(self, service_id: str, route_id: str) -> bool:
        """Whether a call to this service and route ('' for none) can count: the filter but status."""
        return (self.service_id is None or self.service_id == service_id) and \
            (self.route_id is None or self.route_id == route_id)

    def matches_status(self, status: int) -> bool:
        return self.statuses is None or any(status in statuses for statuses in self.statuses)

    def matches(self, service_id: str, route_id: str, status: int) -> bool:
        return self.matches_target(service_id, route_id) and self.matches_status(status)

    def to_json(self) -> dict[str, Any]:
        """The form plan versions keep (ids as plain strings)."""
        return {"name": self.name, "aggregation": self.aggregation, "field": self.field,
                "service": self.service_id, "route": self.route_id,
                "status": None if self.statuses is None else [s.text() for s in self.statuses]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Meter:
        """A meter from `to_json`'s form."""
        status = data.get("status")
        return cls(data["name"], data["aggregation"], data.get("field"), data.get("service"), data.get("route"),
                   None if status is None else tuple(parse_status(item) for item in status))

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> Meter:
        """A meter from its Admin API entity (validated)."""
        return cls.from_json({**entity, "service": _ref_id(entity.get("service")),
                              "route": _ref_id(entity.get("route"))})


def _ref_id(ref: object) -> str | None:
    return ref.get("id") if isinstance(ref, Mapping) else None


def status_problems(values: Sequence[object]) -> list[str | None] | None:
    """Kong's list shape for a status filter (None for the fine entries), or None if all are fine."""
    problems: list[str | None] = []
    for value in values:
        try:
            parse_status(value)
            problems.append(None)
        except ValueError:
            problems.append(STATUS_FORMAT)
    return problems if any(problems) else None


def meter_problems(entity: Mapping[str, Any]) -> Errors:
    """What field types cannot say about a meter: `field` goes with `sum` only, statuses parse."""
    errors: Errors = {}
    if entity.get("aggregation") == "sum" and entity.get("field") is None:
        errors["field"] = "required when aggregation is 'sum': one of " + ", ".join(SUM_FIELDS)
    if entity.get("aggregation") == "count" and entity.get("field") is not None:
        errors["field"] = "must be null when aggregation is 'count'"
    if entity.get("status") is not None:
        problems = status_problems(entity["status"])
        if problems:
            errors["status"] = problems
    return errors


@dataclass(frozen=True)
class Figure:
    """One number to read from the ledger: `meter` over [lo, hi) (epoch seconds, whole minutes)."""

    meter: Meter
    lo: int
    hi: int


def minute_end(instant: int) -> int:
    """The end of the minute holding `instant`: usage "so far" includes the minute in progress."""
    return instant - instant % 60 + 60
