"""Quotes: lines rounded once, half up, totals summed from rounded lines, JSON with strings and minor units."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tollway.billing.errors import InvalidQuantity, UnknownMeter
from tollway.billing.plans import parse_plan
from tollway.billing.proration import Share
from tollway.billing.quote import price_period, quote

PLAN = parse_plan({
    "currency": "USD", "base_fee": "29", "minimum_commitment": "100",
    "charges": {
        "requests": {"model": "graduated", "tiers": [
            {"up_to": 1000, "unit_price": "0", "flat_fee": "0"},
            {"up_to": 10000, "unit_price": "0.0015", "flat_fee": "1"},
            {"up_to": None, "unit_price": "0.001"},
        ]},
        "bytes": {"model": "package", "package_size": 1000000, "package_price": "0.05", "free_units": 0},
    },
})


def test_a_quote_answers_the_simulate_shape():
    answer = quote(PLAN, {"requests": 12345, "bytes": Decimal(2500001)}).to_json()
    assert answer == {
        "currency": "USD",
        "lines": [
            {"kind": "base_fee", "meter": None, "model": None, "units": None, "tiers": [], "price": "29",
             "proration": None, "amount": "29.00", "amount_minor": 2900},
            {"kind": "usage", "meter": "requests", "model": "graduated", "units": "12345", "tiers": [
                {"from": 1, "to": 1000, "units": "1000", "unit_price": "0", "flat_fee": "0", "amount": "0"},
                # 9000 × 0.0015 + 1
                {"from": 1001, "to": 10000, "units": "9000", "unit_price": "0.0015", "flat_fee": "1",
                 "amount": "14.5"},
                # 2345 × 0.001
                {"from": 10001, "to": None, "units": "2345", "unit_price": "0.001", "flat_fee": "0",
                 "amount": "2.345"},
            ], "price": None, "proration": None, "amount": "16.85", "amount_minor": 1685},  # 16.845 half up
            {"kind": "usage", "meter": "bytes", "model": "package", "units": "2500001", "tiers": [
                {"from": 1, "to": None, "units": "2500001", "unit_price": "0.05", "flat_fee": "0", "amount": "0.15",
                 "packages": 3},
            ], "price": None, "proration": None, "amount": "0.15", "amount_minor": 15},
        ],
        "total": "46.00",
        "total_minor": 4600,
    }
    assert json.loads(json.dumps(answer)) == answer


def test_a_meter_left_out_used_nothing():
    lines = quote(PLAN, {}).lines
    assert [(line.kind, line.meter, line.amount_minor) for line in lines] == [
        ("base_fee", None, 2900), ("usage", "requests", 0), ("usage", "bytes", 0)]
    assert lines[1].tiers == ()


def test_totals_are_sums_of_rounded_lines():
    plan = parse_plan({"currency": "USD", "charges": {
        "a": {"model": "standard", "unit_price": "0.125"}, "b": {"model": "standard", "unit_price": "0.125"}}})
    result = quote(plan, {"a": 1, "b": 1})
    assert [line.to_json()["amount"] for line in result.lines] == ["0.00", "0.13", "0.13"]
    assert (format(result.total, "f"), result.total_minor) == ("0.26", 26)  # not round(0.25)


@pytest.mark.parametrize(("code", "unit_price", "amount", "minor"), [
    ("USD", "0.125", "0.13", 13),
    ("JPY", "2.5", "3", 3),
    ("KWD", "0.0125", "0.013", 13),
])
def test_a_line_rounds_half_up_in_its_currency(code, unit_price, amount, minor):
    plan = parse_plan({"currency": code, "charges": {"calls": {"model": "standard", "unit_price": unit_price}}})
    line = quote(plan, {"calls": 1}).lines[1]
    assert (line.to_json()["amount"], line.amount_minor) == (amount, minor)


def test_a_jpy_quote_has_no_decimals():
    plan = parse_plan({"currency": "JPY", "base_fee": "980", "charges": {
        "calls": {"model": "volume", "tiers": [{"up_to": 100, "unit_price": "1.5"}, {"unit_price": "0.75"}]}}})
    answer = quote(plan, {"calls": 101}).to_json()
    assert [(line["amount"], line["amount_minor"]) for line in answer["lines"]] == [("980", 980), ("76", 76)]  # 75.75
    assert (answer["total"], answer["total_minor"]) == ("1056", 1056)


def test_a_kwd_quote_has_three_decimals():
    plan = parse_plan({"currency": "KWD", "base_fee": "1.5", "charges": {
        "calls": {"model": "package", "package_size": 1000, "package_price": "0.0125", "free_units": 500}}})
    answer = quote(plan, {"calls": 2501}).to_json()  # 2001 billable: 3 packages × 0.0125 = 0.0375
    assert [(line["amount"], line["amount_minor"]) for line in answer["lines"]] == [("1.500", 1500), ("0.038", 38)]
    assert (answer["total"], answer["total_minor"]) == ("1.538", 1538)


def test_a_period_price_prorates_the_base_fee_and_tops_up_the_commitment():
    result = price_period(PLAN, {"requests": 5500}, Share(22, 31))
    assert [(line.kind, line.to_json()["amount"], line.amount_minor) for line in result.lines] == [
        ("base_fee", "20.58", 2058),             # 29 × 22/31 = 20.5806
        ("usage", "7.75", 775),                  # 4500 × 0.0015 + 1
        ("usage", "0.00", 0),
        ("minimum_commitment", "42.64", 4264),   # 100 × 22/31 = 70.97, less 20.58 + 7.75
    ]
    assert result.lines[0].to_json()["proration"] == {"days": 22, "period_days": 31}
    assert result.lines[3].to_json()["price"] == "100"
    assert (format(result.total, "f"), result.total_minor) == ("70.97", 7097)


def test_a_period_whose_lines_exceed_the_commitment_has_a_zero_true_up():
    result = price_period(PLAN, {"requests": 100000}, Share(31, 31))  # 14.5 + 90000 × 0.001 = 104.50
    assert [line.amount_minor for line in result.lines] == [2900, 10450, 0, 0]
    assert result.total_minor == 13350


def test_a_period_in_trial_bills_no_base_fee_and_no_commitment():
    result = price_period(PLAN, {"requests": 2000}, Share(0, 31))
    assert [line.amount_minor for line in result.lines] == [0, 250, 0, 0]  # 1000 × 0.0015 + 1


def test_a_plan_without_commitment_has_no_true_up_line():
    plan = parse_plan({"currency": "USD", "base_fee": "10"})
    assert [line.kind for line in price_period(plan, {}, Share(3, 30)).lines] == ["base_fee"]
    assert price_period(plan, {}, Share(3, 30)).base_fee.amount_minor == 100


def test_usage_of_a_meter_the_plan_does_not_price_is_refused():
    with pytest.raises(UnknownMeter, match="'videos'"):
        quote(PLAN, {"videos": 3})


@pytest.mark.parametrize("units", [-1, 2.5, True, "7", Decimal("-0.1"), Decimal("Infinity")])
def test_a_bad_quantity_is_refused(units):
    with pytest.raises(InvalidQuantity):
        quote(PLAN, {"requests": units})
