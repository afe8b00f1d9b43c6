"""Billing periods in the subscription's time zone: calendar and anniversary, across DST and month ends."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from tollway.billing.errors import InvalidDefinition, UnknownTimeZone
from tollway.billing.periods import BillingCycle, BillingPeriod, add_months, zone
from tollway.metering import periods as metering

NEW_YORK, BERLIN, SANTIAGO = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/Santiago")
HOUR = 3600


def at(tz: ZoneInfo, *fields: int) -> int:
    return int(datetime(*fields, tzinfo=tz).timestamp())


def cycle(interval: str, anchor: str, tz: ZoneInfo, started: date = date(2027, 1, 1)) -> BillingCycle:
    return BillingCycle(interval, anchor, tz, started)


def spans(periods: list[BillingPeriod]) -> list[tuple[str, str, int]]:
    return [(p.start.isoformat(), p.end.isoformat(), p.days) for p in periods]


def starts(c: BillingCycle, first: date, count: int) -> list[str]:
    period, out = c.period_on(first), []
    for _ in range(count):
        out.append(period.start_day.isoformat())
        period = c.next_period(period)
    return out


def test_a_period_gives_its_bounds_as_aware_datetimes_and_epoch_seconds():
    period = cycle("month", "calendar", NEW_YORK).period_at(at(NEW_YORK, 2027, 3, 20, 9))
    assert period.start_epoch == 1803877200  # 2027-03-01T05:00:00Z
    assert period.start == datetime(2027, 3, 1, tzinfo=NEW_YORK)
    assert period.end == datetime(2027, 4, 1, tzinfo=NEW_YORK)
    assert period.to_json() == {
        "start": "2027-03-01T00:00:00-05:00", "end": "2027-04-01T00:00:00-04:00",
        "start_epoch": 1803877200, "end_epoch": 1803877200 + 31 * 24 * HOUR - HOUR, "days": 31,
    }


def test_new_york_march_and_november_are_an_hour_short_and_long_but_31_and_30_days():
    c = cycle("month", "calendar", NEW_YORK)
    march = c.period_at(at(NEW_YORK, 2027, 3, 14, 12))   # the spring-forward day
    november = c.period_at(at(NEW_YORK, 2027, 11, 7, 12))  # the fall-back day
    assert (march.days, march.end_epoch - march.start_epoch) == (31, 743 * HOUR)
    assert (november.days, november.end_epoch - november.start_epoch) == (30, 721 * HOUR)
    assert spans([november]) == [("2027-11-01T00:00:00-04:00", "2027-12-01T00:00:00-05:00", 30)]


def test_an_instant_belongs_to_the_local_period_not_the_utc_one():
    c = cycle("month", "calendar", NEW_YORK)
    late_february = 1803877200 - 2 * HOUR  # 2027-03-01T03:00Z is Feb 28, 22:00 in New York
    assert c.period_at(late_february).start_day == date(2027, 2, 1)
    assert c.period_at(1803877200).start_day == date(2027, 3, 1)
    assert c.period_at(1803877200 - 1).start_day == date(2027, 2, 1)


def test_berlin_weeks_start_on_monday_and_run_168_hours_but_across_dst():
    c = cycle("week", "calendar", BERLIN)
    spring = c.period_at(at(BERLIN, 2027, 3, 28, 12))   # Sunday: clocks go forward
    autumn = c.period_at(at(BERLIN, 2027, 10, 31, 12))  # Sunday: clocks go back
    plain = c.period_at(at(BERLIN, 2027, 6, 9, 12))     # a Wednesday
    assert spans([spring, autumn, plain]) == [
        ("2027-03-22T00:00:00+01:00", "2027-03-29T00:00:00+02:00", 7),
        ("2027-10-25T00:00:00+02:00", "2027-11-01T00:00:00+01:00", 7),
        ("2027-06-07T00:00:00+02:00", "2027-06-14T00:00:00+02:00", 7),
    ]
    assert [p.end_epoch - p.start_epoch for p in (spring, autumn, plain)] == [167 * HOUR, 169 * HOUR, 168 * HOUR]


def test_february_has_28_days_or_29_in_a_leap_year_and_long_months_31():
    c = cycle("month", "calendar", BERLIN)
    assert [c.period_on(date(2027, month, 10)).days for month in (1, 2, 3, 4)] == [31, 28, 31, 30]
    assert c.period_on(date(2028, 2, 29)).days == 29
    assert spans([c.period_on(date(2028, 2, 1))]) == [("2028-02-01T00:00:00+01:00", "2028-03-01T00:00:00+01:00", 29)]


def test_calendar_quarters_start_on_january_april_july_and_october_first():
    c = cycle("quarter", "calendar", BERLIN)
    assert starts(c, date(2027, 2, 14), 5) == ["2027-01-01", "2027-04-01", "2027-07-01", "2027-10-01", "2028-01-01"]
    assert [c.period_on(date(2027, m, 1)).days for m in (1, 4, 7, 10)] == [90, 91, 92, 92]
    assert c.period_on(date(2028, 3, 31)).days == 91


def test_calendar_years_start_on_january_first():
    c = cycle("year", "calendar", NEW_YORK)
    assert spans([c.period_on(date(2028, 7, 4))]) == [("2028-01-01T00:00:00-05:00", "2029-01-01T00:00:00-05:00", 366)]


def test_an_anniversary_on_the_31st_falls_on_each_month_end_without_drifting():
    c = BillingCycle.for_subscription("month", "anniversary", "Europe/Berlin", at(BERLIN, 2027, 1, 31, 15, 30))
    assert c.anchor_day == date(2027, 1, 31)
    assert starts(c, date(2027, 1, 31), 15) == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30", "2027-07-31",
        "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31", "2028-01-31", "2028-02-29",
        "2028-03-31",
    ]
    assert c.period_at(at(BERLIN, 2027, 1, 31, 15, 30)).start == datetime(2027, 1, 31, tzinfo=BERLIN)


def test_an_anniversary_period_is_found_from_any_day_inside_it():
    c = cycle("month", "anniversary", BERLIN, date(2027, 1, 31))
    assert c.period_on(date(2027, 2, 27)).start_day == date(2027, 1, 31)
    assert c.period_on(date(2027, 2, 28)).start_day == date(2027, 2, 28)
    assert c.period_on(date(2027, 3, 30)).start_day == date(2027, 2, 28)
    assert c.period_on(date(2027, 3, 30)).end_day == date(2027, 3, 31)
    assert c.period_on(date(2027, 3, 31)).days == 30


def test_anniversary_quarters_run_every_three_months_from_the_start_day():
    c = cycle("quarter", "anniversary", BERLIN, date(2027, 11, 30))
    assert starts(c, date(2027, 11, 30), 5) == ["2027-11-30", "2028-02-29", "2028-05-30", "2028-08-30", "2028-11-30"]
    assert [c.period_on(date.fromisoformat(day)).days for day in ("2027-11-30", "2028-02-29", "2028-05-30",
                                                                  "2028-08-30")] == [91, 91, 92, 92]


def test_an_anniversary_year_from_february_29th_falls_on_the_28th_until_the_next_leap_year():
    c = cycle("year", "anniversary", NEW_YORK, date(2028, 2, 29))
    assert starts(c, date(2028, 2, 29), 5) == ["2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29"]
    assert c.period_on(date(2028, 6, 1)).days == 365
    assert c.period_on(date(2031, 6, 1)).days == 366


def test_anniversary_weeks_start_on_the_subscription_weekday_and_cross_dst():
    c = BillingCycle.for_subscription("week", "anniversary", NEW_YORK, at(NEW_YORK, 2027, 3, 10, 18))  # Wednesday
    period = c.period_at(at(NEW_YORK, 2027, 3, 16, 23, 59))
    assert spans([period]) == [("2027-03-10T00:00:00-05:00", "2027-03-17T00:00:00-04:00", 7)]
    assert period.end_epoch - period.start_epoch == 167 * HOUR
    assert c.next_period(period).start_day == date(2027, 3, 17)


def test_a_skipped_local_midnight_starts_the_period_at_the_first_real_instant():
    # Santiago springs forward at 00:00 on 2027-09-05: that midnight does not exist.
    c = cycle("week", "anniversary", SANTIAGO, date(2027, 8, 29))
    period = c.period_on(date(2027, 9, 6))
    assert spans([period]) == [("2027-09-05T01:00:00-03:00", "2027-09-12T00:00:00-03:00", 7)]
    assert c.period_at(period.start_epoch) == period
    assert c.period_at(period.start_epoch - 1).start_day == date(2027, 8, 29)


def test_periods_in_a_range_are_those_it_overlaps_in_order():
    c = cycle("month", "calendar", BERLIN)
    found = list(c.periods(at(BERLIN, 2027, 1, 15), at(BERLIN, 2027, 4, 1)))
    assert [p.start_day.isoformat() for p in found] == ["2027-01-01", "2027-02-01", "2027-03-01"]
    assert [p.start_day.month for p in c.periods(at(BERLIN, 2027, 1, 15), at(BERLIN, 2027, 4, 1) + 1)] == [1, 2, 3, 4]
    assert list(c.periods(at(BERLIN, 2027, 2, 1), at(BERLIN, 2027, 2, 1))) == []
    assert all(a.end_epoch == b.start_epoch for a, b in zip(found, found[1:], strict=False))


def test_a_period_contains_its_start_and_not_its_end():
    period = cycle("month", "calendar", BERLIN).period_on(date(2027, 5, 5))
    assert period.start_epoch in period
    assert period.end_epoch - 1 in period
    assert period.end_epoch not in period


@pytest.mark.parametrize("interval", ["week", "month", "year"])
@pytest.mark.parametrize("tz", [NEW_YORK, BERLIN, SANTIAGO, ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe")])
def test_calendar_periods_agree_with_the_metering_calendar(interval, tz):
    c = cycle(interval, "calendar", tz)
    instant = at(tz, 2026, 12, 20, 13)
    for _ in range(60):
        period = c.period_at(instant)
        assert period.start_epoch == metering.period_start(instant, interval, tz)
        assert period.end_epoch == metering.next_period_start(period.start_epoch, interval, tz)
        instant = period.end_epoch + 5 * 24 * HOUR + 7 * HOUR


def test_add_months_keeps_the_anchor_day_or_the_month_end():
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2027, 1, 31), 2) == date(2027, 3, 31)
    assert add_months(date(2027, 3, 31), -1) == date(2027, 2, 28)
    assert add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)


def test_a_bad_interval_anchor_or_zone_is_refused():
    with pytest.raises(InvalidDefinition) as caught:
        BillingCycle("day", "monthly", BERLIN, date(2027, 1, 1))
    assert caught.value.fields == {"interval": "expected one of: week, month, quarter, year",
                                   "billing_anchor": "expected one of: calendar, anniversary"}
    for name in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(UnknownTimeZone):
            zone(name)
