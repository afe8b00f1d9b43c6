"""Properties that hold for any tiers, quantity, currency or day (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.billing.charge_models import price
from tollway.billing.charges import Graduated, Standard, Tier, Volume
from tollway.billing.currency import ISO_4217, currency
from tollway.billing.money import round_amount
from tollway.billing.periods import BillingCycle, zone
from tollway.billing.plans import Plan
from tollway.billing.proration import billable_share
from tollway.billing.quote import quote

prices = st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False)
quantities = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False),
)
priceable = sorted(code for code, exponent in ISO_4217.items() if exponent is not None)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=10**6), max_size=6))))
    tiers = [Tier(bound, draw(prices), draw(prices)) for bound in bounds]
    return (*tiers, Tier(None, draw(prices), draw(prices)))


@given(tier_lists(), quantities)
def test_graduated_total_is_the_sum_of_its_rows_and_the_rows_hold_every_unit(tiers, units):
    priced = price(Graduated(tiers), units)
    assert Fraction(priced.amount) == sum((Fraction(row.amount) for row in priced.tiers), Fraction(0))
    assert sum((row.units for row in priced.tiers), Decimal(0)) == Decimal(units)
    for row in priced.tiers:  # Fractions: the default Decimal context would round 31-digit products
        assert row.units > 0
        assert Fraction(row.amount) == Fraction(row.units) * Fraction(row.unit_price) + Fraction(row.flat_fee)


@given(prices, prices, quantities)
def test_graduated_and_volume_agree_on_one_tier(unit_price, flat_fee, units):
    tiers = (Tier(None, unit_price, flat_fee),)
    assert price(Graduated(tiers), units) == price(Volume(tiers), units)


@given(tier_lists(), quantities)
def test_volume_prices_every_unit_with_one_row_or_none_at_zero(tiers, units):
    priced = price(Volume(tiers), units)
    assert len(priced.tiers) == (0 if units == 0 else 1)
    assert all(row.units == Decimal(units) for row in priced.tiers)


@given(st.integers(min_value=1, max_value=10**6), prices, quantities)
def test_standard_with_free_units_is_graduated_with_a_free_first_tier(free_units, unit_price, units):
    graduated = price(Graduated((Tier(free_units, Decimal(0)), Tier(None, unit_price))), units)
    assert price(Standard(unit_price, free_units), units).amount == graduated.amount


@given(st.sampled_from(priceable), prices, quantities)
def test_a_line_amount_minor_is_its_amount_times_ten_to_the_exponent(code, unit_price, units):
    plan = Plan(currency(code), charges={"calls": Standard(unit_price)})
    line = quote(plan, {"calls": units}).lines[1]
    scale = 10**plan.currency.exponent
    exact = Fraction(units) * Fraction(unit_price) * scale  # in minor units, as a rational: no context at all
    assert line.amount_minor == int(line.amount.scaleb(plan.currency.exponent))
    assert line.amount_minor == int(exact + Fraction(1, 2))  # half up: floor(x + 1/2) for x >= 0
    assert abs(line.amount_minor - exact) <= Fraction(1, 2)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=10**6),
       st.sampled_from(priceable))
def test_a_fraction_rounds_as_a_decimal_does_half_up(numerator, denominator, code):
    cur = currency(code)
    as_decimal = Decimal(numerator) / Decimal(denominator)  # 28 digits: ties only where it is exact
    if Fraction(as_decimal) == Fraction(numerator, denominator):
        assert round_amount(Fraction(numerator, denominator), cur) == round_amount(as_decimal, cur)


anchors = st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31))
zones = st.sampled_from(["UTC", "America/New_York", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
                         "Asia/Kathmandu", "Pacific/Apia"])


@settings(max_examples=200)
@given(st.sampled_from(["week", "month", "quarter", "year"]), st.sampled_from(["calendar", "anniversary"]),
       zones, anchors, st.integers(min_value=0, max_value=2000))
def test_periods_tile_time_and_hold_their_days(interval, anchor, tz, anchor_day, offset):
    cycle = BillingCycle(interval, anchor, zone(tz), anchor_day)
    day = anchor_day + timedelta(days=offset)
    period = cycle.period_on(day)
    following = cycle.next_period(period)
    assert period.start_day <= day < period.end_day
    assert period.end_epoch == following.start_epoch
    assert cycle.period_at(period.start_epoch) == period
    assert cycle.period_at(period.end_epoch - 1) == period
    assert {"week": (7, 7), "month": (28, 31), "quarter": (89, 92), "year": (365, 366)}[interval][0] <= period.days
    assert period.days <= {"week": 7, "month": 31, "quarter": 92, "year": 366}[interval]
    if anchor == "anniversary" and interval != "week":
        last_day = (period.start_day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        assert period.start_day.day == min(anchor_day.day, last_day.day)


@given(zones, anchors, st.integers(min_value=0, max_value=40 * 86400), st.integers(min_value=0, max_value=40 * 86400))
def test_a_plan_change_splits_a_period_without_losing_or_doubling_a_day(tz, anchor_day, into_start, into_change):
    cycle = BillingCycle("month", "calendar", zone(tz), anchor_day)
    period = cycle.period_on(anchor_day)
    started = period.start_epoch + into_start
    change = started + into_change
    before, after = billable_share(period, started, change), billable_share(period, change)
    assert before.days + after.days == billable_share(period, started).days
