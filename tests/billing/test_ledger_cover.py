"""A span of time read from the ledger in whole UTC buckets, coarsest first, never straddling an edge."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.billing.ledger_usage import RetentionExceeded, check_retention, cover
from tollway.config import load_settings
from tollway.metering.periods import bucket_ceil, bucket_floor

BERLIN, KOLKATA = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")


def at(tz: ZoneInfo, *fields: int) -> int:
    return int(datetime(*fields, tzinfo=tz).timestamp())


def utc(*fields: int) -> int:
    return at(ZoneInfo("UTC"), *fields)


def shown(runs: list[tuple[str, int, int]]) -> list[tuple[str, str, str]]:
    def text(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")
    return [(grain, text(a), text(b)) for grain, a, b in runs]


def test_a_utc_calendar_month_is_one_month_bucket():
    assert cover(utc(2027, 2, 1), utc(2027, 3, 1)) == [("month", utc(2027, 2, 1), utc(2027, 3, 1))]


def test_a_berlin_month_across_the_spring_change_reads_an_hour_weeks_days_and_hours():
    # March 2027 in Berlin: Feb 28 23:00Z to Mar 31 22:00Z (summer time from Mar 28); Mar 1 is a Monday.
    assert shown(cover(at(BERLIN, 2027, 3, 1), at(BERLIN, 2027, 4, 1))) == [
        ("hour", "02-28 23:00", "03-01 00:00"),
        ("week", "03-01 00:00", "03-29 00:00"),
        ("day", "03-29 00:00", "03-31 00:00"),
        ("hour", "03-31 00:00", "03-31 22:00"),
    ]


def test_a_half_hour_zone_needs_minutes_at_its_edges():
    assert shown(cover(at(KOLKATA, 2027, 1, 10), at(KOLKATA, 2027, 1, 11))) == [  # 18:30Z to 18:30Z
        ("minute", "01-09 18:30", "01-09 19:00"),
        ("hour", "01-09 19:00", "01-10 18:00"),
        ("minute", "01-10 18:00", "01-10 18:30"),
    ]


def test_an_empty_span_reads_nothing_and_a_span_off_the_minute_is_refused():
    assert cover(utc(2027, 1, 1), utc(2027, 1, 1)) == []
    with pytest.raises(ValueError, match="whole minutes"):
        cover(utc(2027, 1, 1) + 30, utc(2027, 1, 2))


@given(st.integers(0, 5 * 366 * 1440), st.integers(0, 400 * 1440))
def test_runs_tile_the_span_with_whole_aligned_buckets(start_minute: int, length: int):
    lo = utc(2025, 1, 1) + start_minute * 60
    hi = lo + length * 60
    runs = cover(lo, hi)
    at_ = lo
    for grain, first, end in runs:
        assert first == at_ and end > first
        bucket = first
        while bucket < end:  # every bucket of the run starts where the last ended and ends inside the span
            assert bucket_floor(bucket, grain) == bucket
            bucket = bucket_ceil(bucket + 1, grain)
        assert bucket == end
        at_ = end
    assert at_ == hi
    assert all(a[0] != b[0] for a, b in zip(runs, runs[1:], strict=False))  # runs of a grain are merged


def test_minute_rows_past_their_retention_are_refused_not_guessed():
    settings = load_settings(environ={}, billable_minute_retention="7", billable_hour_retention="400")
    now = utc(2027, 2, 1)
    runs = cover(at(KOLKATA, 2027, 1, 1), at(KOLKATA, 2027, 1, 2))
    with pytest.raises(RetentionExceeded, match="billable_minute_retention"):
        check_retention(runs, settings, now)
    check_retention(cover(at(BERLIN, 2027, 1, 1), at(BERLIN, 2027, 1, 2)), settings, now)  # hours: kept 400 days
