"""Query planning: which stored grain answers a report exactly, and how its buckets map to periods.

The ledger holds UTC minute, hour, day, week (from Monday) and month buckets. A grain is exact for
a report when every edge the report draws (its start, each period boundary inside the range, its
end) starts a UTC bucket of that grain: then no bucket straddles two periods. The coarsest exact
grain is read, so a UTC month report reads month rows, a day report in Europe/Berlin reads hour
rows, and one in Asia/Kolkata (UTC+05:30) reads minute rows.

When only the range's own start or end is what forces a fine grain (a UTC week report from the 1st
of a month), the coarse grain is read anyway, from the bucket holding the start to the one holding
the end, and the finer rows between those bucket edges and the range's are subtracted (`minus`):
sums are integers, so this is exact, and it reads a few rows per key instead of one per day.

Minute and hour rows are kept only for billable_minute_retention / billable_hour_retention days:
a range that needs older ones is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sqlalchemy import case, literal_column
from sqlalchemy.sql.elements import ColumnElement

from tollway.config import Settings
from tollway.metering.periods import bucket_ceil, bucket_floor, next_period_start, period_starts, utc_aligned
from tollway.metering.query import QueryError, UsageQuery

GRAINS = ("month", "week", "day", "hour", "minute")   # coarsest first
MAX_PERIODS = 100_000


@dataclass(frozen=True)
class Plan:
    """How to read one report: `grain` rows with lo <= bucket_start < hi, summed per period."""

    period: str
    grain: str
    lo: int
    hi: int | None
    starts: list[int]            # the start of every period in the range, ascending
    ends: dict[int, int]         # period start -> period end
    minus_grain: str | None = None            # rows of this grain in `minus` are subtracted
    minus: tuple[tuple[int, int], ...] = ()   # [from, to) ranges outside the report, inside lo..hi

    @property
    def identity(self) -> bool:
        """Each stored bucket is a period by itself (the grain was chosen exact): no mapping needed."""
        return self.grain == self.period

    def period_of(self, bucket: ColumnElement[Any], grain: str | None = None) -> ColumnElement[Any]:
        """SQL for the start of the period holding `bucket` (of `grain`, by default the plan's): a
        balanced CASE tree over the starts, so each row costs log2(periods) comparisons and no
        period list is pulled into Python."""
        if self.identity and grain in (None, self.grain):
            return bucket

        def subtree(lo: int, hi: int) -> ColumnElement[Any]:
            if hi - lo == 1:
                return literal_column(str(self.starts[lo]))
            mid = (lo + hi) // 2
            return case((bucket < literal_column(str(self.starts[mid])), subtree(lo, mid)),
                        else_=subtree(mid, hi))

        return subtree(0, len(self.starts))


_RETENTION = {"minute": "billable_minute_retention", "hour": "billable_hour_retention"}
PERIOD_GRAIN = {"minute": "minute", "hour": "hour", "day": "day", "week": "week", "month": "month", "year": "month"}


def plan(query: UsageQuery, settings: Settings) -> Plan:
    """Choose the grain and the periods of `query`; QueryError when it cannot be answered exactly."""
    hi = query.end
    try:
        starts = period_starts(query.start, hi if hi is not None else query.now + 1, query.period,
                               query.tz, MAX_PERIODS)
    except ValueError:
        raise QueryError({"period": f"the range holds more than {MAX_PERIODS} {query.period} periods; "
                                    "narrow it or choose a longer period"}) from None
    ends = dict(pairwise(starts))
    ends[starts[-1]] = next_period_start(starts[-1], query.period, query.tz)
    edges = [query.start, *starts[1:]] + ([hi] if hi is not None else [])
    grain = next(g for g in GRAINS if all(utc_aligned(edge, g) for edge in edges))
    # Never coarser than the period's own grain: one day's report reads that day's rows, not the
    # month's less the days before it.
    finest = GRAINS.index(PERIOD_GRAIN[query.period])
    base = next(g for g in GRAINS[finest:] if all(utc_aligned(edge, g) for edge in starts[1:]))
    if GRAINS.index(base) < GRAINS.index(grain):
        trimmed = _trimmed(query, settings, base, starts, ends)
        if trimmed is not None:
            return trimmed
    _check_retention(query, settings, grain, query.start)
    return Plan(query.period, grain, query.start, hi, starts, ends)


def _trimmed(query: UsageQuery, settings: Settings, base: str, starts: list[int],
             ends: dict[int, int]) -> Plan | None:
    """Read `base` buckets over the range's edges and subtract what lies outside; None if retention
    forbids it."""
    lo, hi = bucket_floor(query.start, base), None if query.end is None else bucket_ceil(query.end, base)
    minus = [(lo, query.start)] if lo < query.start else []
    if hi is not None and query.end is not None and hi > query.end:
        minus.append((query.end, hi))
    points = [point for piece in minus for point in piece]
    minus_grain = next(g for g in GRAINS if all(utc_aligned(point, g) for point in points)) if minus else None
    try:
        _check_retention(query, settings, base, lo)
        if minus_grain is not None:
            _check_retention(query, settings, minus_grain, lo)
    except QueryError:
        return None
    return Plan(query.period, base, lo, hi, starts, ends, minus_grain, tuple(minus))


def _check_retention(query: UsageQuery, settings: Settings, grain: str, start: int) -> None:
    if grain in _RETENTION:
        days = getattr(settings, _RETENTION[grain])
        oldest = query.now - days * 86_400
        if start < oldest:
            zone = "" if query.tz.key == "UTC" else f" in {query.tz.key}"
            raise QueryError({"start": (
                f"a {query.period} report{zone} from this start needs per-{grain} usage, which is kept "
                f"for {days} days ({_RETENTION[grain]}); start at or after "
                f"{oldest - oldest % 60} (epoch seconds), or use UTC with a day or longer period")})
