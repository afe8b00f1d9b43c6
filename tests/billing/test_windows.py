"""Entitlement windows in the subscription's zone: clock minutes and hours, local days and months,
billing periods; across DST, February, 31-day months and an anniversary on the 31st."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from tollway.billing.periods import BillingCycle
from tollway.billing.windows import window_at

BERLIN, KOLKATA, UTC = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata"), ZoneInfo("UTC")
HOUR = 3600


def at(tz: ZoneInfo, *fields: int, fold: int = 0) -> int:
    return int(datetime(*fields, tzinfo=tz, fold=fold).timestamp())


def local(tz: ZoneInfo, window: tuple[int, int]) -> tuple[str, str]:
    return datetime.fromtimestamp(window[0], tz).isoformat(), datetime.fromtimestamp(window[1], tz).isoformat()


def calendar(tz: ZoneInfo) -> BillingCycle:
    return BillingCycle("month", "calendar", tz, date(2027, 1, 1))


def test_a_day_is_23_hours_on_the_spring_change_and_25_on_the_autumn_one():
    spring = window_at("day", at(BERLIN, 2027, 3, 28, 12), BERLIN, calendar(BERLIN))
    autumn = window_at("day", at(BERLIN, 2027, 10, 31, 12), BERLIN, calendar(BERLIN))
    assert local(BERLIN, spring) == ("2027-03-28T00:00:00+01:00", "2027-03-29T00:00:00+02:00")
    assert spring[1] - spring[0] == 23 * HOUR and autumn[1] - autumn[0] == 25 * HOUR


def test_the_repeated_autumn_hour_is_two_windows():
    first = window_at("hour", at(BERLIN, 2027, 10, 31, 2, 30, fold=0), BERLIN, calendar(BERLIN))
    second = window_at("hour", at(BERLIN, 2027, 10, 31, 2, 30, fold=1), BERLIN, calendar(BERLIN))
    assert local(BERLIN, first) == ("2027-10-31T02:00:00+02:00", "2027-10-31T02:00:00+01:00")
    assert local(BERLIN, second) == ("2027-10-31T02:00:00+01:00", "2027-10-31T03:00:00+01:00")


def test_a_half_hour_zone_has_hours_starting_at_half_past_utc():
    window = window_at("hour", at(KOLKATA, 2027, 1, 10, 9, 59), KOLKATA, calendar(KOLKATA))
    assert window[0] % HOUR == 30 * 60 and window[1] - window[0] == HOUR


def test_a_minute_resets_on_the_minute():
    assert window_at("minute", at(UTC, 2027, 1, 1, 0, 0, 59), UTC, calendar(UTC)) == \
        (at(UTC, 2027, 1, 1), at(UTC, 2027, 1, 1, 0, 1))


@pytest.mark.parametrize(("day", "start", "end"), [
    ((2027, 2, 14), "2027-02-01T00:00:00+01:00", "2027-03-01T00:00:00+01:00"),   # 28 days
    ((2028, 2, 29), "2028-02-01T00:00:00+01:00", "2028-03-01T00:00:00+01:00"),   # leap year, 29 days
    ((2027, 3, 31), "2027-03-01T00:00:00+01:00", "2027-04-01T00:00:00+02:00"),   # 31 days, 743 hours
])
def test_a_month_is_the_local_calendar_month(day: tuple[int, int, int], start: str, end: str):
    assert local(BERLIN, window_at("month", at(BERLIN, *day, 23, 59), BERLIN, calendar(BERLIN))) == (start, end)


def test_a_billing_period_window_follows_an_anniversary_on_the_31st():
    cycle = BillingCycle("month", "anniversary", BERLIN, date(2027, 1, 31))
    assert local(BERLIN, window_at("billing_period", at(BERLIN, 2027, 2, 10), BERLIN, cycle)) == \
        ("2027-01-31T00:00:00+01:00", "2027-02-28T00:00:00+01:00")
    assert local(BERLIN, window_at("billing_period", at(BERLIN, 2027, 3, 1), BERLIN, cycle)) == \
        ("2027-02-28T00:00:00+01:00", "2027-03-31T00:00:00+02:00")
    assert local(BERLIN, window_at("billing_period", at(BERLIN, 2027, 4, 29), BERLIN, cycle)) == \
        ("2027-03-31T00:00:00+02:00", "2027-04-30T00:00:00+02:00")


def test_an_unknown_period_is_refused():
    with pytest.raises(ValueError, match="unknown entitlement period"):
        window_at("fortnight", 0, UTC, calendar(UTC))
