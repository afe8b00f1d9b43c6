"""Calendar periods (minute, hour, day, ISO week, month, year) in any IANA time zone.

Instants are integer epoch seconds. Minute and hour periods follow the local clock as it reads
(so a repeated hour at a DST fall-back is two periods); day and longer periods run from local
midnight to local midnight (23 or 25 hours long across DST). A local midnight that does not
exist starts the day at the first instant that does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("minute", "hour", "day", "week", "month", "year")


def local(instant: int, tz: ZoneInfo) -> datetime:
    """The aware local time of an epoch instant."""
    return datetime.fromtimestamp(instant, tz)


def _midnight(day: date, tz: ZoneInfo) -> int:
    # fold=0 reads a skipped midnight with the offset before the gap: the first real instant after it.
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def _first_day(day: date, period: str) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _next_first_day(day: date, period: str) -> date:
    if period == "day":
        return day + timedelta(days=1)
    if period == "week":
        return day + timedelta(days=7)
    if period == "month":
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return date(day.year + 1, 1, 1)


def period_start(instant: int, period: str, tz: ZoneInfo) -> int:
    """The start of the period holding `instant`."""
    moment = local(instant, tz)
    if period == "minute":
        return instant - moment.second
    if period == "hour":
        return instant - moment.minute * 60 - moment.second
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    return _midnight(_first_day(moment.date(), period), tz)


def next_period_start(start: int, period: str, tz: ZoneInfo) -> int:
    """The start of the period after the one starting at `start`."""
    if period == "minute":
        return start + 60
    if period == "hour":
        following = period_start(start + 3600, "hour", tz)
        return following if following > start else start + 3600
    day = _first_day(local(start, tz).date(), period)
    return _midnight(_next_first_day(day, period), tz)


def period_starts(lo: int, hi: int, period: str, tz: ZoneInfo, limit: int) -> list[int]:
    """Starts of the periods overlapping [lo, hi), in order; ValueError beyond `limit` periods."""
    starts = [period_start(lo, period, tz)]
    while True:
        following = next_period_start(starts[-1], period, tz)
        if following >= hi:
            return starts
        if len(starts) >= limit:
            raise ValueError(f"more than {limit} periods")
        starts.append(following)


def iso(instant: int, tz: ZoneInfo) -> str:
    """ISO 8601 with the zone's offset, e.g. 2028-03-26T00:00:00+01:00."""
    return local(instant, tz).isoformat()


def utc_aligned(instant: int, grain: str) -> bool:
    """Whether `instant` starts a UTC bucket of the grain (minute, hour, day, week, month)."""
    return bucket_floor(instant, grain) == instant


def bucket_floor(instant: int, grain: str) -> int:
    """The start of the UTC bucket of the grain holding `instant` (a week starts on Monday)."""
    if grain == "minute":
        return instant - instant % 60
    if grain == "hour":
        return instant - instant % 3600
    day = instant - instant % 86_400
    if grain == "day":
        return day
    if grain == "week":
        return day - (day // 86_400 + 3) % 7 * 86_400  # 1970-01-01 was a Thursday
    moment = datetime.fromtimestamp(day, UTC)
    return int(moment.replace(day=1).timestamp())


def bucket_ceil(instant: int, grain: str) -> int:
    """The start of the first UTC bucket of the grain at or after `instant`."""
    start = bucket_floor(instant, grain)
    if start == instant:
        return instant
    if grain == "month":
        moment = datetime.fromtimestamp(start, UTC)
        return int(moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1).timestamp())
    return start + {"minute": 60, "hour": 3600, "day": 86_400, "week": 7 * 86_400}[grain]
