"""Calendar periods in UTC and in zones with DST, and the grain each report is planned on."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from tests.conftest import make_settings
from tests.metering.conftest import at
from tollway.metering.periods import iso, next_period_start, period_start, period_starts
from tollway.metering.plan import plan
from tollway.metering.query import QueryError, UsageQuery

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = at("2030-01-01T00:00:00+00:00")


def t(text: str) -> int:
    return int(at(text))


@pytest.mark.parametrize("period, instant, start, end", [
    ("minute", "2028-02-29T23:59:30+00:00", "2028-02-29T23:59:00+00:00", "2028-03-01T00:00:00+00:00"),
    ("hour", "2028-02-29T23:59:30+00:00", "2028-02-29T23:00:00+00:00", "2028-03-01T00:00:00+00:00"),
    ("day", "2028-02-29T23:59:30+00:00", "2028-02-29T00:00:00+00:00", "2028-03-01T00:00:00+00:00"),
    ("week", "2028-02-29T23:59:30+00:00", "2028-02-28T00:00:00+00:00", "2028-03-06T00:00:00+00:00"),
    ("month", "2028-02-29T23:59:30+00:00", "2028-02-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00"),
    ("year", "2028-12-31T23:59:59+00:00", "2028-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00"),
])
def test_utc_calendar_periods(period: str, instant: str, start: str, end: str) -> None:
    begin = period_start(t(instant), period, UTC)
    assert (iso(begin, UTC), iso(next_period_start(begin, period, UTC), UTC)) == (start, end)


def test_berlin_days_are_23_and_25_hours_long_across_dst() -> None:
    spring = period_start(t("2028-03-26T12:00:00+02:00"), "day", BERLIN)
    assert iso(spring, BERLIN) == "2028-03-26T00:00:00+01:00"
    assert next_period_start(spring, "day", BERLIN) - spring == 23 * 3600
    autumn = period_start(t("2028-10-29T12:00:00+01:00"), "day", BERLIN)
    assert next_period_start(autumn, "day", BERLIN) - autumn == 25 * 3600
    assert iso(next_period_start(autumn, "day", BERLIN), BERLIN) == "2028-10-30T00:00:00+01:00"


def test_the_repeated_hour_at_fall_back_is_two_hour_periods() -> None:
    starts = period_starts(t("2028-11-05T00:00:00-04:00"), t("2028-11-05T03:00:00-05:00"), "hour", NEW_YORK, 100)
    assert [iso(s, NEW_YORK) for s in starts] == [
        "2028-11-05T00:00:00-04:00", "2028-11-05T01:00:00-04:00", "2028-11-05T01:00:00-05:00",
        "2028-11-05T02:00:00-05:00"]


def test_a_skipped_midnight_starts_the_day_at_the_first_real_instant() -> None:
    santiago = ZoneInfo("America/Santiago")  # 2028-09-03: clocks jump from 00:00 to 01:00
    start = period_start(t("2028-09-03T12:00:00-03:00"), "day", santiago)
    assert iso(start, santiago) == "2028-09-03T01:00:00-03:00"


def plan_of(**params: str) -> str:
    settings = make_settings(__import__("pathlib").Path("/nonexistent"), "sqlite",
                             billable_hour_retention="100000", billable_minute_retention="100000")
    the_plan = plan(UsageQuery.parse(params, NOW), settings)
    return the_plan.grain + (f"-{the_plan.minus_grain}" if the_plan.minus_grain else "")


@pytest.mark.parametrize("params, grain", [
    ({"period": "month", "start": "2028-01-01", "end": "2029-01-01"}, "month"),
    ({"period": "year", "start": "2028-01-01", "end": "2030-01-01"}, "month"),
    ({"period": "day", "start": "2028-01-01", "end": "2028-02-01"}, "day"),
    ({"period": "week", "start": "2028-01-03", "end": "2028-02-07"}, "week"),
    ({"period": "week", "start": "2028-01-01", "end": "2028-02-01"}, "week-day"),
    ({"period": "day", "start": "2028-03-01", "end": "2028-04-01", "tz": "Europe/Berlin"}, "hour"),
    ({"period": "month", "start": "2028-01-01", "end": "2028-06-01", "tz": "America/New_York"}, "hour"),
    ({"period": "day", "start": "2028-03-01", "end": "2028-03-05", "tz": "Asia/Kolkata"}, "minute"),
    ({"period": "month", "start": "2028-01-10", "end": "2028-03-01"}, "month-day"),
    ({"period": "hour", "start": "2028-01-01T10:30:00+00:00", "end": "2028-01-01T12:00:00+00:00"}, "hour-minute"),
    ({"period": "week", "start": "2028-01-03", "end": "2028-02-07", "tz": "Europe/Berlin"}, "hour"),
])
def test_the_coarsest_exact_grain_is_read(params: dict[str, str], grain: str) -> None:
    """`coarse-fine`: coarse rows over the range's edges, minus the fine rows outside it."""
    assert plan_of(**params) == grain


def test_a_range_past_the_retention_of_its_grain_is_refused_with_a_reason() -> None:
    settings = make_settings(__import__("pathlib").Path("/nonexistent"), "sqlite")
    query = UsageQuery.parse({"period": "day", "start": "2027-01-01", "end": "2027-02-01",
                              "tz": "Europe/Berlin"}, NOW)
    with pytest.raises(QueryError) as caught:
        plan(query, settings)
    assert "per-hour usage, which is kept for 400 days" in caught.value.fields["start"]
    # The same range in UTC reads day rows, which are kept forever.
    assert plan(UsageQuery.parse({"period": "day", "start": "2027-01-01", "end": "2027-02-01"}, NOW),
                settings).grain == "day"


def test_bad_parameters_are_all_listed_at_once() -> None:
    with pytest.raises(QueryError) as caught:
        UsageQuery.parse({"period": "fortnight", "tz": "Mars/Olympus", "start": "yesterday", "size": "0",
                          "status": "99", "group_by": "planet", "offset": "!!", "csv": "maybe",
                          "colour": "red"}, NOW)
    assert set(caught.value.fields) == {"period", "tz", "start", "size", "status", "group_by", "offset",
                                        "csv", "colour"}
    assert caught.value.fields["period"] == "expected one of: minute, hour, day, week, month, year"
    assert caught.value.fields["tz"] == "unknown time zone 'Mars/Olympus'"
    assert str(caught.value).startswith("9 schema violations (")


def test_end_before_start_and_defaults() -> None:
    with pytest.raises(QueryError) as caught:
        UsageQuery.parse({"start": "2028-02-01", "end": "2028-01-01"}, NOW)
    assert caught.value.fields == {"end": "must be after start"}
    query = UsageQuery.parse({"tz": "Europe/Berlin"}, NOW)
    assert iso(query.start, query.tz) == "2030-01-01T00:00:00+01:00"  # this calendar month, in tz
    assert query.end is None and query.period == "day" and query.size == 100
    assert UsageQuery.parse({"end": str(NOW + 10)}, NOW).end is None  # an end after now is open
    assert UsageQuery.parse({"start": "1830297600", "end": "1830384000.5"}, NOW).end == 1830384000
