"""A subscription's usage in its current billing period: units, money so far, entitlements.

`reading(subscription, version, now)` says what to read from the ledger (a `Reading` of figures),
`Reading.answer(figures)` shapes GET /consumers/{c}/usage. Units count from the later of the
period's start and the start of the phase in effect (usage before it was under another plan
version); entitlements count over their own window (window.py), from the same phase start.

Money is the pricing engine's: each meter's charge priced on the units so far and rounded once,
the base fee for the share of the period the phase covers out of trial (proration.py), the total
the sum of the rounded lines. The minimum commitment is shown as what the period owes at least;
its true-up is an invoice's business, at the period's end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from tollway.billing.meters import Figure, minute_end
from tollway.billing.money import minor_units
from tollway.billing.periods import BillingPeriod
from tollway.billing.proration import billable_share, prorate, trial_end
from tollway.billing.quote import price_period
from tollway.billing.subscriptions import Phase, Timeline
from tollway.billing.versions import Entitlement, PlanVersion
from tollway.billing.windows import window_at
from tollway.metering.periods import iso as _iso


@dataclass(frozen=True)
class Window:
    entitlement: Entitlement
    start: int    # when the window started (the limit's count starts at the phase's start, if later)
    end: int      # when the limit resets


@dataclass(frozen=True)
class Reading:
    """What one subscription's usage answer needs from the ledger, and how to shape it."""

    subscription: dict[str, Any]
    timeline: Timeline
    phase: Phase
    version: PlanVersion
    period: BillingPeriod
    counted_from: int
    until: int
    windows: tuple[Window, ...]
    now: int

    @cached_property
    def figures(self) -> tuple[Figure, ...]:
        """Each meter over the period so far, then each entitlement's meter over its window so far."""
        meters = tuple(Figure(meter, self.counted_from, self.until) for meter in self.version.meters.values())
        limits = tuple(Figure(window.entitlement.meter, max(window.start, self.phase.starts_at),
                              min(window.end, self.until)) for window in self.windows)
        return meters + limits

    def answer(self, figures: list[int]) -> dict[str, Any]:
        units = dict(zip(self.version.meters, figures, strict=False))
        used = figures[len(units):]
        plan = self.version.plan
        share = billable_share(self.period, self.phase.starts_at, self.phase.ends_at,
                               trial_end(self.timeline.started_at, plan.trial_days, self.timeline.tz))
        priced = price_period(replace(plan, minimum_commitment=None),
                              {meter: units[meter] for meter in plan.charges}, share)
        lines = {line.meter: line for line in priced.lines if line.kind == "usage"}
        tz = self.timeline.tz
        commitment = None
        if plan.minimum_commitment is not None:
            due = prorate(plan.minimum_commitment, share, plan.currency)
            commitment = {"amount": format(due, "f"), "amount_minor": minor_units(due, plan.currency),
                          "proration": share.to_json()}
        sub = self.subscription
        return {
            "subscription": {"id": sub["id"], "plan": {"id": self.phase.plan_id, "name": self.phase.plan_name},
                             "plan_version": self.phase.version, "tz": tz.key, "started_at": sub["started_at"],
                             "ends_at": sub.get("ends_at"), "external_customer_id": sub.get("external_customer_id")},
            "period": self.period.to_json(),
            "counted_from": iso(self.counted_from, tz),
            "as_of": iso(self.now, tz),
            "currency": plan.currency.code,
            "meters": [_meter_line(name, count, lines.get(name)) for name, count in units.items()],
            "base_fee": priced.base_fee.to_json(),
            "minimum_commitment": commitment,
            "total": format(priced.total, "f"),
            "total_minor": priced.total_minor,
            "entitlements": [_entitlement(window, count, tz) for window, count in zip(self.windows, used,
                                                                                       strict=True)],
        }


@lru_cache(maxsize=4096)
def iso(instant: int, tz: ZoneInfo) -> str:
    """ISO 8601 in the zone: the same few edges recur in every answer of a bulk read."""
    return _iso(instant, tz)


def _meter_line(name: str, units: int, line: Any) -> dict[str, Any]:
    if line is None:  # limited by an entitlement, not priced
        return {"meter": name, "units": units, "model": None, "tiers": [], "amount": None, "amount_minor": None}
    return {"meter": name, "units": units, "model": line.model, "tiers": [row.to_json() for row in line.tiers],
            "amount": format(line.amount, "f"), "amount_minor": line.amount_minor}


def _entitlement(window: Window, used: int, tz: Any) -> dict[str, Any]:
    limit = window.entitlement.limit
    return {"meter": window.entitlement.meter.name, "period": window.entitlement.period,
            "enforcement": window.entitlement.enforcement, "limit": limit, "used": used,
            "remaining": max(limit - used, 0), "overage": max(used - limit, 0),
            "window_start": iso(window.start, tz), "resets_at": iso(window.end, tz), "resets_at_epoch": window.end}


def reading(subscription: dict[str, Any], timeline: Timeline, phase: Phase, version: PlanVersion,
            now: int) -> Reading:
    """What to read for `subscription`, on `phase` (in effect at `now`, of plan version `version`)."""
    cycle = phase.cycle(timeline.tz)
    period = cycle.period_at(now)
    counted_from = max(period.start_epoch, phase.starts_at)
    windows = tuple(Window(item, period.start_epoch, period.end_epoch) if item.period == "billing_period"
                    else Window(item, *window_at(item.period, now, timeline.tz, cycle))
                    for item in version.entitlements)
    return Reading(subscription, timeline, phase, version, period, counted_from, minute_end(now), windows, now)
