"""Proration by local calendar days: the base fee (and the minimum commitment) of a period that a
subscription covers only in part, because it started, changed plan or ended mid-period, or was in
its trial.

The billed share of a period is `days / period_days`, where `days` counts the local days that are
active and out of trial. A span [active_from, active_to) counts the day it starts on and not the day
it ends on, so the day of a plan change is billed once, on the new plan (a subscription ended at
10:00 on the 20th is billed to the 19th; one ended at the 21st's midnight, to the 20th). A trial of
`trial_days` frees the base fee from the subscription's first local day up to that many days later.

The minimum commitment is prorated by the same share as the base fee: a subscription that covers
a third of a period, or spends two thirds of it in trial, owes a third of the commitment. Its
true-up is `max(prorated commitment - sum of the period's rounded lines, 0)`, each side rounded
once to the minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from tollway.billing.currency import Currency
from tollway.billing.money import from_minor, minor_units, round_amount
from tollway.billing.periods import BillingPeriod, local_day, local_midnight, zone


@dataclass(frozen=True)
class Share:
    """The part of a period a fee is billed for: `days` of its `period_days` local days."""

    days: int
    period_days: int

    def __post_init__(self) -> None:
        if not 0 <= self.days <= self.period_days or self.period_days < 1:
            raise ValueError(f"a share of {self.days} days of {self.period_days} is not a part of a period")

    @classmethod
    def whole(cls, period: BillingPeriod) -> Share:
        """All of `period`."""
        return cls(period.days, period.days)

    @property
    def is_whole(self) -> bool:
        return self.days == self.period_days

    def of(self, amount: Decimal) -> Fraction:
        """`amount × days / period_days`, exactly (a Fraction: 29 × 22/31 has no finite decimal)."""
        return Fraction(amount) * self.days / self.period_days

    def to_json(self) -> dict[str, Any]:
        return {"days": self.days, "period_days": self.period_days}


def trial_end(started_at: int, trial_days: int, tz: str | ZoneInfo) -> int:
    """The instant a trial of `trial_days` ends: the local midnight that many days after the
    subscription's first local day (its start, when there is no trial)."""
    zoneinfo = zone(tz)
    return local_midnight(local_day(started_at, zoneinfo) + timedelta(days=trial_days), zoneinfo)


def billable_share(period: BillingPeriod, active_from: int, active_to: int | None = None,
                   trial_ends_at: int | None = None) -> Share:
    """The share of `period` to bill: local days in [active_from, active_to) (None: still active),
    and not before `trial_ends_at` (see trial_end)."""
    first = max(period.start_day, local_day(active_from, period.tz))
    if trial_ends_at is not None:
        first = max(first, local_day(trial_ends_at, period.tz))
    last = period.end_day if active_to is None else min(period.end_day, local_day(active_to, period.tz))
    return Share(max((last - first).days, 0), period.days)


def prorate(amount: Decimal, share: Share, currency: Currency) -> Decimal:
    """`amount` for `share` of its period, rounded once, half up, to the currency's minor unit."""
    return round_amount(amount if share.is_whole else share.of(amount), currency)


@dataclass(frozen=True)
class TrueUp:
    """A minimum commitment weighed against what the period's lines already charge."""

    due: Decimal        # the commitment for the share of the period, rounded
    charged: Decimal    # the sum of the period's rounded lines
    amount: Decimal     # max(due - charged, 0)


def commitment_true_up(commitment: Decimal, share: Share, charged_minor: int, currency: Currency) -> TrueUp:
    """The true-up owed when the period's lines (in minor units) fall short of the commitment."""
    due = prorate(commitment, share, currency)
    shortfall = max(minor_units(due, currency) - charged_minor, 0)
    return TrueUp(due, from_minor(charged_minor, currency), from_minor(shortfall, currency))
