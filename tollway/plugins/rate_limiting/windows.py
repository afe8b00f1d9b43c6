"""The calendar windows a rate limit counts in: second, minute, hour, day, month and year in a zone.

A window is [start, end) in epoch seconds; its end is when the limit resets and, with the counter's
key, names the window (a new window's counter starts at 0 on its own). Months are real months (28
to 31 days), days run from local midnight to local midnight (23 or 25 hours across DST), and minutes
and hours follow the local clock as tollway.metering.periods does (a repeated hour at a DST
fall-back is two windows). Kong's own windows are UTC, with a month of 30 days.

`Windows` keeps the current window of each period, so a call costs a comparison until one ends.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from tollway.metering.periods import next_period_start, period_start

PERIODS = ("second", "minute", "hour", "day", "month", "year")


def window_at(period: str, instant: int, tz: ZoneInfo) -> tuple[int, int]:
    """The window of `period` in `tz` holding `instant` (epoch seconds): (start, end)."""
    if period == "second":
        return instant, instant + 1
    if period not in PERIODS:
        raise ValueError(f"unknown rate-limiting period {period!r}")
    start = period_start(instant, period, tz)
    return start, next_period_start(start, period, tz)


class Windows:
    """The current windows of some periods in one zone, recomputed only when one has ended."""

    __slots__ = ("periods", "tz", "_starts", "_ends")

    def __init__(self, periods: tuple[str, ...], tz: ZoneInfo) -> None:
        self.periods = periods
        self.tz = tz
        self._starts = [0] * len(periods)
        self._ends = [0] * len(periods)

    def ends(self, now: int) -> list[int]:
        """The end of each period's window holding `now`, in the order of `periods`."""
        starts, ends = self._starts, self._ends
        for i, period in enumerate(self.periods):
            if not starts[i] <= now < ends[i]:
                starts[i], ends[i] = window_at(period, now, self.tz)
        return list(ends)
