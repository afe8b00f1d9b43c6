"""Charge definitions: every problem reported at once, in Kong's `fields` shape, with short messages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollway.billing.charges import Graduated, Package, Standard, Tier, Volume, parse_charge, validate_charge
from tollway.billing.errors import InvalidDefinition

FORMAT = "expected a decimal string with at most 12 decimal places"
REQUIRED = "required field missing"


def test_valid_definitions_parse_with_their_defaults():
    assert parse_charge({"model": "standard", "unit_price": "0.0015"}) == Standard(Decimal("0.0015"), 0)
    assert parse_charge({"model": "package", "package_size": 100, "package_price": 5, "free_units": None}) == (
        Package(100, Decimal(5), 0))
    tiers = [{"up_to": 10, "unit_price": "1"}, {"unit_price": "0.5", "flat_fee": "2"}]
    expected = (Tier(10, Decimal(1), Decimal(0)), Tier(None, Decimal("0.5"), Decimal(2)))
    assert parse_charge({"model": "graduated", "tiers": tiers}) == Graduated(expected)
    assert parse_charge({"model": "volume", "tiers": tiers}) == Volume(expected)


def test_a_definition_reads_back_as_json_with_strings_for_prices():
    tiers = [{"up_to": 10, "unit_price": "1.50"}, {"up_to": None, "unit_price": "0.5", "flat_fee": "2"}]
    assert parse_charge({"model": "graduated", "tiers": tiers}).to_json() == {"model": "graduated", "tiers": [
        {"up_to": 10, "unit_price": "1.5", "flat_fee": "0"}, {"up_to": None, "unit_price": "0.5", "flat_fee": "2"},
    ]}
    assert parse_charge({"model": "package", "package_size": 100, "package_price": "5"}).to_json() == {
        "model": "package", "package_size": 100, "package_price": "5", "free_units": 0}


@pytest.mark.parametrize(("data", "errors"), [
    ("standard", {"@entity": ["expected a record"]}),
    ({}, {"model": REQUIRED}),
    ({"model": "tiered"}, {"model": "expected one of: standard, graduated, volume, package"}),
    ({"model": ["standard"]}, {"model": "expected one of: standard, graduated, volume, package"}),
    ({"model": "standard"}, {"unit_price": REQUIRED}),
    ({"model": "standard", "unit_price": "-0.5"}, {"unit_price": "must not be negative"}),
    ({"model": "standard", "unit_price": "1e-3"}, {"unit_price": FORMAT}),
    ({"model": "standard", "unit_price": 0.1}, {"unit_price": FORMAT}),
    ({"model": "standard", "unit_price": "0.0000000000001"}, {"unit_price": FORMAT}),
    ({"model": "standard", "unit_price": "1" * 19},
     {"unit_price": "expected at most 18 digits before the decimal point"}),
    ({"model": "standard", "unit_price": "1", "free_units": -1}, {"free_units": "must not be negative"}),
    ({"model": "standard", "unit_price": "1", "free_units": "5"}, {"free_units": "expected an integer"}),
    ({"model": "standard", "unit_price": "1", "free_units": 1.5}, {"free_units": "expected an integer"}),
    ({"model": "standard", "unit_price": "1", "free_units": True}, {"free_units": "expected an integer"}),
    ({"model": "standard", "unit_price": "1", "colour": "red"}, {"colour": "unknown field"}),
    ({"model": "standard", "unit_price": "1", "tiers": []}, {"tiers": "not used by the standard model"}),
    ({"model": "package", "package_price": "5"}, {"package_size": REQUIRED}),
    ({"model": "package", "package_size": 10}, {"package_price": REQUIRED}),
    ({"model": "package", "package_size": 0, "package_price": "5"}, {"package_size": "value must be at least 1"}),
    ({"model": "package", "package_size": "10", "package_price": "5"}, {"package_size": "expected an integer"}),
    ({"model": "package", "package_size": 10, "package_price": "-5"}, {"package_price": "must not be negative"}),
    ({"model": "package", "package_size": 10, "package_price": "5", "free_units": -2},
     {"free_units": "must not be negative"}),
    ({"model": "package", "package_size": 10, "package_price": "5", "unit_price": "1"},
     {"unit_price": "not used by the package model"}),
    ({"model": "graduated"}, {"tiers": REQUIRED}),
    ({"model": "volume", "tiers": {"up_to": None}}, {"tiers": "expected an array"}),
    ({"model": "volume", "tiers": []}, {"tiers": "length must be at least 1"}),
    ({"model": "graduated", "tiers": [{"up_to": None, "unit_price": "1"}], "free_units": 5},
     {"free_units": "not used by the graduated model"}),
])
def test_each_bad_field_gets_its_message(data, errors):
    assert validate_charge(data) == errors
    with pytest.raises(InvalidDefinition) as caught:
        parse_charge(data)
    assert caught.value.fields == errors


def tiers_errors(tiers):
    return validate_charge({"model": "graduated", "tiers": tiers})["tiers"]


def test_tiers_must_be_strictly_increasing():
    assert tiers_errors([
        {"up_to": 100, "unit_price": "1"}, {"up_to": 100, "unit_price": "1"},
        {"up_to": 50, "unit_price": "1"}, {"up_to": None, "unit_price": "1"},
    ]) == [
        None, {"up_to": "must be greater than the previous tier's up_to (100)"},
        {"up_to": "must be greater than the previous tier's up_to (100)"}, None,
    ]


def test_only_the_last_tier_is_open_ended():
    assert tiers_errors([
        {"up_to": None, "unit_price": "1"}, {"unit_price": "1"}, {"up_to": 10, "unit_price": "1"},
    ]) == [
        {"up_to": "must be set on every tier but the last"}, {"up_to": "must be set on every tier but the last"},
        {"up_to": "must be null on the last tier"},
    ]
    assert tiers_errors([{"up_to": 10, "unit_price": "1"}]) == [{"up_to": "must be null on the last tier"}]


def test_each_bad_tier_field_gets_its_message_in_its_element():
    assert tiers_errors([
        "cheap",
        {"up_to": 0, "unit_price": "1"},
        {"up_to": "20", "unit_price": "1"},
        {"up_to": 30, "flat_fee": "1"},
        {"up_to": 40, "unit_price": "1.0000000000001", "flat_fee": "-2"},
        {"up_to": 50, "unit_price": None, "flat_fee": 0.5, "note": "x"},
        {"up_to": None, "unit_price": "0.5", "flat_fee": None},
    ]) == [
        "expected a record",
        {"up_to": "value must be at least 1"},
        {"up_to": "expected an integer"},
        {"unit_price": REQUIRED},
        {"unit_price": FORMAT, "flat_fee": "must not be negative"},
        {"unit_price": REQUIRED, "flat_fee": FORMAT, "note": "unknown field"},
        None,
    ]


def test_every_problem_is_reported_at_once():
    assert validate_charge({"model": "package", "package_size": 0, "package_price": "x", "free_units": -1,
                            "tiers": [], "extra": 1}) == {
        "package_size": "value must be at least 1", "package_price": FORMAT, "free_units": "must not be negative",
        "tiers": "not used by the package model", "extra": "unknown field",
    }


def test_a_valid_definition_has_no_problems():
    assert validate_charge({"model": "volume", "tiers": [{"up_to": 1, "unit_price": "0"}, {"unit_price": "1"}]}) == {}
