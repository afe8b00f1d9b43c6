"""The four charge models at every tier edge (0, the edge, the edge + 1), with hand-computed amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollway.billing.charge_models import TierRow, price
from tollway.billing.charges import parse_charge
from tollway.billing.errors import InvalidQuantity

D = Decimal
TIERS = [
    {"up_to": 100, "unit_price": "0.10", "flat_fee": "1"},
    {"up_to": 1000, "unit_price": "0.05", "flat_fee": "2"},
    {"up_to": None, "unit_price": "0.01"},
]
GRADUATED = parse_charge({"model": "graduated", "tiers": TIERS})
VOLUME = parse_charge({"model": "volume", "tiers": TIERS})


@pytest.mark.parametrize(("units", "amount"), [
    (0, "0"),
    (1, "1.10"),        # 1 × 0.10 + flat 1
    (100, "11"),        # 100 × 0.10 + 1
    (101, "13.05"),     # 11 + (1 × 0.05 + flat 2)
    (1000, "58"),       # 11 + (900 × 0.05 + 2)
    (1001, "58.01"),    # 58 + 1 × 0.01
    (D("100.5"), "13.025"),  # 11 + (0.5 × 0.05 + 2)
])
def test_graduated_prices_each_tier_with_its_flat_fee_once_touched(units, amount):
    assert price(GRADUATED, units).amount == D(amount)


def test_graduated_at_zero_units_touches_no_tier_and_charges_no_flat_fee():
    priced = price(GRADUATED, 0)
    assert priced.tiers == ()
    assert priced.amount == 0


def test_graduated_rows_show_each_tier_touched():
    assert price(GRADUATED, 1001).tiers == (
        TierRow(1, 100, D(100), D("0.10"), D(1), D(11)),
        TierRow(101, 1000, D(900), D("0.05"), D(2), D(47)),
        TierRow(1001, None, D(1), D("0.01"), D(0), D("0.01")),
    )
    assert [row.to_json() for row in price(GRADUATED, 101).tiers] == [
        {"from": 1, "to": 100, "units": "100", "unit_price": "0.1", "flat_fee": "1", "amount": "11"},
        {"from": 101, "to": 1000, "units": "1", "unit_price": "0.05", "flat_fee": "2", "amount": "2.05"},
    ]


@pytest.mark.parametrize(("units", "amount", "first_unit"), [
    (1, "1.10", 1),         # 1 × 0.10 + 1
    (100, "11", 1),         # 100 × 0.10 + 1
    (101, "7.05", 101),     # 101 × 0.05 + 2: every unit at the second tier's price
    (1000, "52", 101),      # 1000 × 0.05 + 2
    (1001, "10.01", 1001),  # 1001 × 0.01
    (D("100.5"), "7.025", 101),  # 100.5 is past the first tier: 100.5 × 0.05 + 2
])
def test_volume_prices_every_unit_at_the_tier_holding_the_total(units, amount, first_unit):
    priced = price(VOLUME, units)
    assert priced.amount == D(amount)
    (row,) = priced.tiers
    assert (row.first_unit, row.units, row.amount) == (first_unit, D(units), D(amount))


def test_volume_at_zero_units_costs_nothing_not_even_the_flat_fee():
    priced = price(VOLUME, 0)
    assert (priced.amount, priced.tiers) == (0, ())


STANDARD = parse_charge({"model": "standard", "unit_price": "0.0015", "free_units": 1000})


@pytest.mark.parametrize(("units", "billable", "amount"), [
    (0, 0, "0"), (999, 0, "0"), (1000, 0, "0"), (1001, 1, "0.0015"), (5000, 4000, "6"),
])
def test_standard_charges_units_past_the_free_ones(units, billable, amount):
    priced = price(STANDARD, units)
    assert priced.amount == D(amount)
    assert priced.tiers == (TierRow(1001, None, D(billable), D("0.0015"), D(0), D(amount)),)


def test_standard_without_free_units_charges_the_first_unit():
    charge = parse_charge({"model": "standard", "unit_price": "0.0015"})
    assert price(charge, 0).amount == 0
    assert price(charge, 1).amount == D("0.0015")
    assert price(charge, 1).tiers[0].first_unit == 1


def test_standard_prices_a_decimal_quantity():
    charge = parse_charge({"model": "standard", "unit_price": "0.08", "free_units": 1})
    assert price(charge, D("2.5")).amount == D("0.12")  # 1.5 × 0.08


PACKAGE = parse_charge({"model": "package", "package_size": 100, "package_price": "5", "free_units": 10})


@pytest.mark.parametrize(("units", "billable", "packages", "amount"), [
    (0, 0, 0, "0"), (10, 0, 0, "0"), (11, 1, 1, "5"), (110, 100, 1, "5"), (111, 101, 2, "10"),
    (215, 205, 3, "15"), (D("110.5"), D("100.5"), 2, "10"),
])
def test_package_bills_started_packages_past_the_free_units(units, billable, packages, amount):
    priced = price(PACKAGE, units)
    assert priced.amount == D(amount)
    assert priced.tiers == (TierRow(11, None, D(billable), D(5), D(0), D(amount), packages),)


def test_a_package_row_says_how_many_packages_it_billed():
    assert price(PACKAGE, 215).tiers[0].to_json() == {
        "from": 11, "to": None, "units": "205", "unit_price": "5", "flat_fee": "0", "amount": "15", "packages": 3,
    }


def test_a_single_tier_prices_like_standard():
    charge = parse_charge({"model": "graduated", "tiers": [{"up_to": None, "unit_price": "0.25", "flat_fee": "3"}]})
    assert price(charge, 0).amount == 0
    assert price(charge, 4).amount == D(4)  # 4 × 0.25 + 3


@pytest.mark.parametrize("units", [-1, 1.5, True, "10", None, D("-1"), D("NaN")])
@pytest.mark.parametrize("charge", [STANDARD, GRADUATED, VOLUME, PACKAGE])
def test_a_bad_quantity_is_refused_by_every_model(charge, units):
    with pytest.raises(InvalidQuantity):
        price(charge, units)
