"""Billing periods: weeks, months, quarters and years of a subscription, in its IANA time zone.

A period runs from a local midnight to a local midnight, so it is computed as local calendar days
and only then turned into instants: a day is 23 or 25 hours across a DST change and a period's
length in days never is. A local midnight that does not exist (a DST jump at 00:00) starts the day
at the first instant that does, as in tollway.metering.periods.

- calendar: weeks start on Monday, months on the 1st, quarters on Jan/Apr/Jul/Oct 1, years on Jan 1;
- anniversary: periods start on the subscription's first local day, then every 7 days or every 1,
  3 or 12 months on the same day of the month; a day past a month's end falls on its last day,
  without drifting (an anchor on Jan 31 gives Feb 28 or 29, then Mar 31).
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tollway.billing.errors import InvalidDefinition, UnknownTimeZone
from tollway.metering.periods import local

INTERVALS = ("week", "month", "quarter", "year")
ANCHORS = ("calendar", "anniversary")
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def zone(name: str | ZoneInfo) -> ZoneInfo:
    """The IANA time zone of that name; UnknownTimeZone if there is none."""
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise UnknownTimeZone(name) from exc


def local_day(instant: int, tz: ZoneInfo) -> date:
    """The local calendar day an epoch instant falls on."""
    return local(instant, tz).date()


def local_midnight(day: date, tz: ZoneInfo) -> int:
    """The epoch instant a local calendar day starts at."""
    # fold=0 reads a skipped midnight with the offset before the gap: the first real instant after it.
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def add_months(anchor: date, months: int) -> date:
    """The anchor's day of the month, `months` later (or earlier), or that month's last day."""
    year, month = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    return date(year, month + 1, min(anchor.day, monthrange(year, month + 1)[1]))


@dataclass(frozen=True)
class BillingPeriod:
    """One billing period, [start, end): local days `start_day` up to `end_day` excluded."""

    start_day: date
    end_day: date            # the first day of the next period
    start_epoch: int
    end_epoch: int
    tz: ZoneInfo

    @classmethod
    def of(cls, start_day: date, end_day: date, tz: ZoneInfo) -> BillingPeriod:
        return cls(start_day, end_day, local_midnight(start_day, tz), local_midnight(end_day, tz), tz)

    @property
    def start(self) -> datetime:
        """The start as an aware local datetime."""
        return local(self.start_epoch, self.tz)

    @property
    def end(self) -> datetime:
        """The end (the next period's start) as an aware local datetime."""
        return local(self.end_epoch, self.tz)

    @property
    def days(self) -> int:
        """Its length in local calendar days (28 to 366), whatever DST did to its hours."""
        return (self.end_day - self.start_day).days

    def __contains__(self, instant: int) -> bool:
        return self.start_epoch <= instant < self.end_epoch

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "start_epoch": self.start_epoch, "end_epoch": self.end_epoch, "days": self.days}


@dataclass(frozen=True)
class BillingCycle:
    """How a subscription's periods follow each other: interval, anchoring, time zone, and the
    local day it started on (the anniversary anchor; unused by calendar anchoring)."""

    interval: str
    billing_anchor: str
    tz: ZoneInfo
    anchor_day: date

    def __post_init__(self) -> None:
        errors = {}
        if self.interval not in INTERVALS:
            errors["interval"] = "expected one of: " + ", ".join(INTERVALS)
        if self.billing_anchor not in ANCHORS:
            errors["billing_anchor"] = "expected one of: " + ", ".join(ANCHORS)
        if errors:
            raise InvalidDefinition(errors)

    @classmethod
    def for_subscription(cls, interval: str, billing_anchor: str, tz: str | ZoneInfo, started_at: int) -> BillingCycle:
        """The cycle of a subscription that started at epoch `started_at` in time zone `tz`."""
        zoneinfo = zone(tz)
        return cls(interval, billing_anchor, zoneinfo, local_day(started_at, zoneinfo))

    def period_at(self, instant: int) -> BillingPeriod:
        """The period holding epoch `instant`."""
        return self.period_on(local_day(instant, self.tz))

    def period_on(self, day: date) -> BillingPeriod:
        """The period holding local calendar day `day`."""
        start = self._first_day(day)
        return BillingPeriod.of(start, self._next_start(start), self.tz)

    def next_period(self, period: BillingPeriod) -> BillingPeriod:
        """The period after `period`."""
        return self.period_on(period.end_day)

    def periods(self, lo: int, hi: int) -> Iterator[BillingPeriod]:
        """The periods overlapping [lo, hi), in order (none when hi <= lo)."""
        if hi <= lo:
            return
        period = self.period_at(lo)
        while period.start_epoch < hi:
            yield period
            period = self.next_period(period)

    def _first_day(self, day: date) -> date:
        if self.billing_anchor == "calendar":
            if self.interval == "week":
                return day - timedelta(days=day.weekday())
            months = _MONTHS[self.interval]
            return date(day.year, (day.month - 1) // months * months + 1, 1)
        if self.interval == "week":
            return self.anchor_day + timedelta(days=(day - self.anchor_day).days // 7 * 7)
        months = _MONTHS[self.interval]
        elapsed = (day.year - self.anchor_day.year) * 12 + day.month - self.anchor_day.month
        steps = elapsed // months
        start = add_months(self.anchor_day, steps * months)
        return start if start <= day else add_months(self.anchor_day, (steps - 1) * months)

    def _next_start(self, start: date) -> date:
        """The first day of the period after the one starting on `start`."""
        if self.interval == "week":
            return start + timedelta(days=7)
        months = _MONTHS[self.interval]
        if self.billing_anchor == "anniversary":
            # Re-anchor on the original day so Jan 31 -> Feb 28 -> Mar 31, never Mar 28.
            elapsed = (start.year - self.anchor_day.year) * 12 + start.month - self.anchor_day.month
            return add_months(self.anchor_day, elapsed + months)
        return add_months(start, months)
