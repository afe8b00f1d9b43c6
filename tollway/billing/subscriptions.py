"""A subscription's timeline: which plan version applies when, pure functions over epoch seconds.

A subscription runs from `started_at` until `ends_at` (None: until cancelled) and is cut into
phases, each a plan version over [starts_at, ends_at). A plan change made "now" ends the phase in
effect and starts the new one at that instant; one made "at the period's end" starts the new
phase where the current billing period ends (a scheduled phase, replaced by a later schedule or
cancel). A cancel cuts the timeline now or at the period's end. Phases already begun are never
rewritten: they are the history invoices are built from.

Time on a subscription is counted in whole minutes, the usage ledger's finest grain, so that
every minute of usage belongs to exactly one phase: a start or a plan change made now takes
effect at the start of the current minute, a cancel made now at its end (the minute in progress
belongs to the subscription, on its new plan). Billing periods start at local midnights, which
are whole minutes.

A phase copies from its version what deciding needs without a database: the cycle (interval,
billing_anchor, and `anchored_at`, the instant whose local day anchors anniversary periods) and
the entitlements with their meters inlined, so that proxy workers can enforce them from the
configuration snapshot (see gate.py). A change to a plan with the same interval and anchoring
keeps the cycle's anchor; any other change re-anchors it at the change, as Stripe does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tollway.billing.errors import BillingError
from tollway.billing.periods import BillingCycle, BillingPeriod
from tollway.billing.versions import Entitlement, PlanVersion


def minute_floor(instant: int) -> int:
    return instant - instant % 60


class TimelineError(BillingError):
    """A change the timeline cannot take (the subscription has ended, or ends first)."""


@dataclass(frozen=True)
class Phase:
    plan_id: str
    plan_name: str
    version: int
    starts_at: int
    ends_at: int | None
    interval: str
    billing_anchor: str
    anchored_at: int
    entitlements: tuple[Entitlement, ...]

    def covers(self, instant: int) -> bool:
        return self.starts_at <= instant and (self.ends_at is None or instant < self.ends_at)

    def cycle(self, tz: ZoneInfo) -> BillingCycle:
        return BillingCycle.for_subscription(self.interval, self.billing_anchor, tz, self.anchored_at)

    def to_json(self) -> dict[str, Any]:
        return {"plan": {"id": self.plan_id, "name": self.plan_name}, "plan_version": self.version,
                "starts_at": self.starts_at, "ends_at": self.ends_at, "interval": self.interval,
                "billing_anchor": self.billing_anchor, "anchored_at": self.anchored_at,
                "entitlements": [item.to_json(inline_meter=True) for item in self.entitlements]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Phase:
        return cls(data["plan"]["id"], data["plan"]["name"], int(data["plan_version"]), int(data["starts_at"]),
                   None if data.get("ends_at") is None else int(data["ends_at"]), data["interval"],
                   data["billing_anchor"], int(data["anchored_at"]), _entitlements(orjson.dumps(data["entitlements"])))


@lru_cache(maxsize=1024)
def _entitlements(encoded: bytes) -> tuple[Entitlement, ...]:
    """Entitlements from their JSON, compiled once: every subscription of a version has the same."""
    return tuple(Entitlement.from_json(item) for item in orjson.loads(encoded))


def phase_of(plan_id: str, number: int, version: PlanVersion, starts_at: int, anchored_at: int) -> Phase:
    """An open-ended phase of a plan version from `starts_at`."""
    return Phase(plan_id, version.name, number, starts_at, None, version.plan.interval, version.plan.billing_anchor,
                 anchored_at, version.entitlements)


@dataclass(frozen=True)
class Timeline:
    started_at: int
    ends_at: int | None
    tz: ZoneInfo
    phases: tuple[Phase, ...]

    @classmethod
    def start(cls, started_at: int, tz: ZoneInfo, plan_id: str, number: int, version: PlanVersion) -> Timeline:
        """A subscription from the start of the minute holding `started_at`."""
        start = minute_floor(started_at)
        return cls(start, None, tz, (phase_of(plan_id, number, version, start, start),))

    @classmethod
    def from_json(cls, started_at: int, ends_at: int | None, tz: ZoneInfo, phases: list[Mapping[str, Any]]) -> Timeline:
        return cls(started_at, ends_at, tz, tuple(Phase.from_json(item) for item in phases))

    def active_at(self, instant: int) -> bool:
        return self.started_at <= instant and (self.ends_at is None or instant < self.ends_at)

    def phase_at(self, instant: int) -> Phase | None:
        """The phase in effect at `instant`, or None when the subscription is not active then."""
        if not self.active_at(instant):
            return None
        return next((phase for phase in self.phases if phase.covers(instant)), None)

    def current(self, now: int) -> Phase:
        """The phase in effect now, or the first one before the start, or the last one after the end."""
        if now < self.started_at:
            return self.phases[0]
        return self.phase_at(now) or self.phases[-1]

    def period_end(self, now: int) -> int:
        """The end of the billing period holding `now` (or the start, before it)."""
        return self.period(now).end_epoch

    def period(self, now: int) -> BillingPeriod:
        return self.current(now).cycle(self.tz).period_at(max(now, self.started_at))

    def next_phase(self, now: int) -> Phase | None:
        """The phase scheduled after the one in effect now, if any."""
        current = self.current(now)
        return next((phase for phase in self.phases if phase.starts_at > current.starts_at), None)

    def switch(self, now: int, plan_id: str, number: int, version: PlanVersion) -> Timeline:
        """Change plan from the start of this minute: before the start, the first phase is replaced."""
        self._check_open(now)
        at = minute_floor(now)
        if at <= self.started_at:
            first = phase_of(plan_id, number, version, self.started_at, self.started_at)
            return replace(self, phases=(replace(first, ends_at=self.ends_at),))
        return self._cut_and_append(at, plan_id, number, version)

    def schedule(self, now: int, plan_id: str, number: int, version: PlanVersion) -> Timeline:
        """Change plan at the end of the current billing period (replacing an earlier schedule)."""
        self._check_open(now)
        at = self.period_end(now)
        if self.ends_at is not None and self.ends_at <= at:
            raise TimelineError("the subscription ends before its current billing period does")
        return self._cut_and_append(at, plan_id, number, version)

    def unschedule(self, now: int) -> Timeline:
        """Drop a change scheduled after the phase in effect now."""
        current = self.current(now)
        kept = tuple(phase for phase in self.phases if phase.starts_at <= current.starts_at)
        last = replace(kept[-1], ends_at=self.ends_at)
        return replace(self, phases=(*kept[:-1], last))

    def cancel(self, now: int, at_period_end: bool) -> Timeline:
        """End with this minute, or at the end of the current billing period; later phases are dropped."""
        self._check_open(now)
        end = self.period_end(now) if at_period_end else max(minute_floor(now) + 60, self.started_at)
        kept = tuple(phase for phase in self.phases if phase.starts_at < end) or self.phases[:1]
        last = replace(kept[-1], ends_at=end)
        return replace(self, ends_at=end, phases=(*kept[:-1], last))

    def _check_open(self, now: int) -> None:
        if self.ends_at is not None and self.ends_at <= now:
            raise TimelineError("the subscription has ended")

    def _cut_and_append(self, at: int, plan_id: str, number: int, version: PlanVersion) -> Timeline:
        kept = [phase for phase in self.phases if phase.starts_at < at]
        before = replace(kept[-1], ends_at=at)
        same_cycle = (before.interval, before.billing_anchor) == (version.plan.interval, version.plan.billing_anchor)
        anchored_at = before.anchored_at if same_cycle else at
        following = replace(phase_of(plan_id, number, version, at, anchored_at), ends_at=self.ends_at)
        return replace(self, phases=(*kept[:-1], before, following))
