"""Entitlement windows: the stretch of time a limit counts over, in the subscription's time zone.

    minute, hour     the local clock's minute and hour (tollway.metering.periods: a repeated hour
                     at a DST fall-back is two windows, a half-hour zone's hours start at :30 UTC)
    day, month       local midnight to local midnight, calendar months (23- and 25-hour days)
    billing_period   the subscription's billing period (tollway.billing.periods.BillingCycle):
                     calendar or anniversary, an anniversary past a month's end on its last day

A window is [start, end) in epoch seconds; `end` is when the limit resets. The same function
serves the master (GET /consumers/{c}/usage) and, in phase 2, workers (gate.py), so both agree on
every edge.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

from tollway.billing.periods import BillingCycle
from tollway.metering.periods import next_period_start, period_start

CLOCK_PERIODS = ("minute", "hour", "day", "month")


def window_at(period: str, instant: int, tz: ZoneInfo, cycle: BillingCycle) -> tuple[int, int]:
    """The window of `period` holding `instant`: (start, end)."""
    if period == "billing_period":
        billing = cycle.period_at(instant)
        return billing.start_epoch, billing.end_epoch
    if period not in CLOCK_PERIODS:
        raise ValueError(f"unknown entitlement period {period!r}")
    return _clock_window(period, instant, tz)


@lru_cache(maxsize=1024)
def _clock_window(period: str, instant: int, tz: ZoneInfo) -> tuple[int, int]:
    # many subscriptions read at one instant share their zone's windows
    start = period_start(instant, period, tz)
    return start, next_period_start(start, period, tz)
