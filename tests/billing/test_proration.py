"""Proration by local calendar days: mid-period start, plan change and end, trials, minimum commitment."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from tollway.billing.currency import currency
from tollway.billing.periods import BillingCycle
from tollway.billing.proration import Share, billable_share, commitment_true_up, prorate, trial_end

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
USD, JPY, KWD = currency("USD"), currency("JPY"), currency("KWD")
MONTHLY = BillingCycle("month", "calendar", BERLIN, date(2027, 1, 1))
JANUARY = MONTHLY.period_on(date(2027, 1, 1))
FEBRUARY = MONTHLY.period_on(date(2027, 2, 1))


def at(tz: ZoneInfo, *fields: int) -> int:
    return int(datetime(*fields, tzinfo=tz).timestamp())


def fee(amount: str, share: Share, cur=USD) -> str:
    return format(prorate(Decimal(amount), share, cur), "f")


def test_a_mid_period_start_bills_from_its_local_day():
    share = billable_share(JANUARY, at(BERLIN, 2027, 1, 10, 15))
    assert share == Share(22, 31)        # Jan 10..31
    assert fee("29", share) == "20.58"   # 29 × 22/31 = 20.5806


def test_a_start_before_the_period_bills_all_of_it():
    share = billable_share(FEBRUARY, at(BERLIN, 2026, 11, 5, 9))
    assert share == Share(28, 28)
    assert share.is_whole
    assert fee("29", share) == "29.00"


def test_a_mid_period_end_bills_up_to_the_day_before():
    share = billable_share(JANUARY, at(BERLIN, 2026, 12, 1), at(BERLIN, 2027, 1, 20, 10))
    assert share == Share(19, 31)        # Jan 1..19
    assert fee("29", share) == "17.77"   # 29 × 19/31 = 17.7742


def test_an_end_at_local_midnight_bills_the_whole_day_before_it():
    assert billable_share(JANUARY, at(BERLIN, 2026, 12, 1), at(BERLIN, 2027, 1, 21)) == Share(20, 31)


def test_a_plan_change_bills_the_change_day_once_on_the_new_plan():
    change = at(BERLIN, 2027, 1, 20, 10)
    old = billable_share(JANUARY, at(BERLIN, 2026, 6, 1), change)
    new = billable_share(JANUARY, change)
    assert (old, new) == (Share(19, 31), Share(12, 31))
    assert fee("29", old) == "17.77"     # 29 × 19/31 = 17.7742
    assert fee("49", new) == "18.97"     # 49 × 12/31 = 18.9677


def test_a_start_and_end_on_the_same_day_bills_nothing():
    assert billable_share(JANUARY, at(BERLIN, 2027, 1, 5, 8), at(BERLIN, 2027, 1, 5, 20)) == Share(0, 31)


def test_a_trial_frees_the_days_it_covers():
    started = at(BERLIN, 2027, 1, 10, 15)
    ends = trial_end(started, 14, BERLIN)
    assert ends == at(BERLIN, 2027, 1, 24)
    share = billable_share(JANUARY, started, trial_ends_at=ends)
    assert share == Share(8, 31)         # Jan 24..31
    assert fee("29", share) == "7.48"    # 29 × 8/31 = 7.4839
    assert billable_share(FEBRUARY, started, trial_ends_at=ends) == Share(28, 28)


def test_a_trial_across_a_period_end_frees_all_of_one_and_part_of_the_next():
    started = at(BERLIN, 2027, 1, 20, 9)
    ends = trial_end(started, 30, "Europe/Berlin")   # Feb 19
    assert billable_share(JANUARY, started, trial_ends_at=ends) == Share(0, 31)
    share = billable_share(FEBRUARY, started, trial_ends_at=ends)
    assert share == Share(10, 28)        # Feb 19..28
    assert fee("29", share) == "10.36"   # 29 × 10/28 = 10.3571


def test_no_trial_ends_at_the_start_day():
    assert trial_end(at(BERLIN, 2027, 1, 10, 15), 0, BERLIN) == at(BERLIN, 2027, 1, 10)


def test_proration_counts_days_not_hours_across_dst():
    march = BillingCycle("month", "calendar", NEW_YORK, date(2027, 1, 1)).period_on(date(2027, 3, 1))
    share = billable_share(march, at(NEW_YORK, 2027, 3, 14, 12))  # the 23-hour day
    assert share == Share(18, 31)        # Mar 14..31
    assert fee("31", share) == "18.00"


def test_a_leap_february_has_29_days_to_share():
    february = MONTHLY.period_on(date(2028, 2, 1))
    share = billable_share(february, at(BERLIN, 2028, 2, 15, 12))
    assert share == Share(15, 29)        # Feb 15..29
    assert fee("29", share) == "15.00"


@pytest.mark.parametrize(("amount", "days", "period_days", "cur", "expected"), [
    ("0.875", 1, 7, USD, "0.13"),   # 0.125: half up, not half even (0.12)
    ("17.5", 1, 7, JPY, "3"),       # 2.5
    ("0.0875", 1, 7, KWD, "0.013"),  # 0.0125
    ("10", 1, 3, USD, "3.33"),      # 3.333...
    ("20", 2, 3, USD, "13.33"),     # 13.333...
    ("1000", 10, 30, JPY, "333"),   # 333.33...
])
def test_a_prorated_fee_is_rounded_once_half_up(amount, days, period_days, cur, expected):
    assert fee(amount, Share(days, period_days), cur) == expected


def test_share_is_exact():
    assert Share(22, 31).of(Decimal("29")) == Fraction(638, 31)


@pytest.mark.parametrize(("days", "period_days"), [(-1, 31), (32, 31), (0, 0)])
def test_a_share_must_be_part_of_a_period(days, period_days):
    with pytest.raises(ValueError):
        Share(days, period_days)


def test_a_minimum_commitment_tops_up_what_the_lines_fall_short_of():
    true_up = commitment_true_up(Decimal("100"), Share(31, 31), 3575, USD)  # lines 29.00 + 6.75
    assert [format(v, "f") for v in (true_up.due, true_up.charged, true_up.amount)] == ["100.00", "35.75", "64.25"]


def test_a_minimum_commitment_already_met_adds_nothing():
    assert commitment_true_up(Decimal("100"), Share(31, 31), 10001, USD).amount == 0
    assert commitment_true_up(Decimal("100"), Share(31, 31), 10000, USD).amount == 0


def test_a_minimum_commitment_is_prorated_like_the_base_fee():
    true_up = commitment_true_up(Decimal("100"), Share(22, 31), 2733, USD)  # 20.58 + 6.75
    assert format(true_up.due, "f") == "70.97"   # 100 × 22/31 = 70.9677
    assert format(true_up.amount, "f") == "43.64"
    in_jpy = commitment_true_up(Decimal("1000"), Share(10, 30), 100, JPY)
    assert (format(in_jpy.due, "f"), format(in_jpy.amount, "f")) == ("333", "233")
