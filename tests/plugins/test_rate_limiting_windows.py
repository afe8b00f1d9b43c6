"""Rate-limiting windows with a fixed clock: real months (28 and 31 days), years, DST days, zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tollway.plugins.rate_limiting.windows import Windows, window_at

UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz: ZoneInfo = UTC_ZONE) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp())


def test_a_february_of_28_days_and_a_march_of_31() -> None:
    start, end = window_at("month", at("2027-02-14T12:00:00"), UTC_ZONE)
    assert (start, end) == (at("2027-02-01T00:00:00"), at("2027-03-01T00:00:00"))
    assert end - start == 28 * 86_400
    start, end = window_at("month", at("2027-03-31T23:59:59"), UTC_ZONE)
    assert (start, end) == (at("2027-03-01T00:00:00"), at("2027-04-01T00:00:00"))
    assert end - start == 31 * 86_400
    assert window_at("month", at("2028-02-29T10:00:00"), UTC_ZONE)[1] - at("2028-02-01T00:00:00") == 29 * 86_400


def test_the_year_and_the_short_periods() -> None:
    instant = at("2027-07-04T10:20:30")
    assert window_at("year", instant, UTC_ZONE) == (at("2027-01-01T00:00:00"), at("2028-01-01T00:00:00"))
    assert window_at("day", instant, UTC_ZONE) == (at("2027-07-04T00:00:00"), at("2027-07-05T00:00:00"))
    assert window_at("hour", instant, UTC_ZONE) == (at("2027-07-04T10:00:00"), at("2027-07-04T11:00:00"))
    assert window_at("minute", instant, UTC_ZONE) == (at("2027-07-04T10:20:00"), at("2027-07-04T10:21:00"))
    assert window_at("second", instant, UTC_ZONE) == (instant, instant + 1)


def test_days_across_dst_in_paris_are_23_and_25_hours() -> None:
    spring = window_at("day", at("2027-03-28T12:00:00", PARIS), PARIS)
    assert spring == (at("2027-03-28T00:00:00", PARIS), at("2027-03-29T00:00:00", PARIS))
    assert spring[1] - spring[0] == 23 * 3600
    autumn = window_at("day", at("2027-10-31T12:00:00", PARIS), PARIS)
    assert autumn[1] - autumn[0] == 25 * 3600
    # the month holding the spring change is 31 days less one hour long
    march = window_at("month", at("2027-03-15T00:00:00", PARIS), PARIS)
    assert march[1] - march[0] == 31 * 86_400 - 3600
    assert datetime.fromtimestamp(march[0], UTC).isoformat() == "2027-02-28T23:00:00+00:00"


def test_a_zones_day_starts_at_its_midnight() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    assert window_at("day", at("2027-01-01T23:30:00"), tokyo) == (at("2027-01-02T00:00:00", tokyo),
                                                                  at("2027-01-03T00:00:00", tokyo))
    kolkata = ZoneInfo("Asia/Kolkata")  # +05:30: its hours start at :30 UTC
    assert window_at("hour", at("2027-01-01T10:45:00"), kolkata)[0] == at("2027-01-01T10:30:00")


def test_windows_follow_a_clock_across_boundaries() -> None:
    windows = Windows(("second", "minute", "month"), UTC_ZONE)
    now = at("2027-02-28T23:59:59")
    assert windows.ends(now) == [now + 1, now + 1, now + 1]
    assert windows.ends(now + 1) == [now + 2, now + 61, at("2027-04-01T00:00:00")]


def test_an_unknown_period_is_refused() -> None:
    with pytest.raises(ValueError):
        window_at("fortnight", 0, UTC_ZONE)
