"""Plan definitions: defaults, and every bad field reported at once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollway.billing.charges import Standard
from tollway.billing.currency import Currency
from tollway.billing.errors import InvalidDefinition
from tollway.billing.plans import Plan, parse_plan, validate_plan

FORMAT = "expected a decimal string with at most 12 decimal places"


def test_a_plan_needs_only_a_currency():
    assert parse_plan({"currency": "EUR"}) == Plan(Currency("EUR", 2), "month", "calendar", Decimal(0), 0, None, {})


def test_a_full_plan_parses_and_reads_back():
    data = {"currency": "JPY", "interval": "quarter", "billing_anchor": "anniversary", "base_fee": "3000",
            "trial_days": 14, "minimum_commitment": "10000.5",
            "charges": {"requests": {"model": "standard", "unit_price": "0.15", "free_units": 10}}}
    plan = parse_plan(data)
    assert plan == Plan(Currency("JPY", 0), "quarter", "anniversary", Decimal(3000), 14, Decimal("10000.5"),
                        {"requests": Standard(Decimal("0.15"), 10)})
    assert plan.to_json() == {**data, "charges": {"requests": {"model": "standard", "unit_price": "0.15",
                                                               "free_units": 10}}}


@pytest.mark.parametrize(("data", "errors"), [
    ([], {"@entity": ["expected a record"]}),
    ({}, {"currency": "required field missing"}),
    ({"currency": "ABC"}, {"currency": "expected an active ISO 4217 currency code"}),
    ({"currency": "usd"}, {"currency": "expected an active ISO 4217 currency code"}),
    ({"currency": 840}, {"currency": "expected an active ISO 4217 currency code"}),
    ({"currency": "XAU"}, {"currency": "XAU has no minor unit in ISO 4217 and cannot be priced"}),
    ({"currency": "USD", "interval": "day"}, {"interval": "expected one of: week, month, quarter, year"}),
    ({"currency": "USD", "billing_anchor": "monthly"}, {"billing_anchor": "expected one of: calendar, anniversary"}),
    ({"currency": "USD", "base_fee": "-29"}, {"base_fee": "must not be negative"}),
    ({"currency": "USD", "base_fee": 29.99}, {"base_fee": FORMAT}),
    ({"currency": "USD", "minimum_commitment": "lots"}, {"minimum_commitment": FORMAT}),
    ({"currency": "USD", "minimum_commitment": "-1"}, {"minimum_commitment": "must not be negative"}),
    ({"currency": "USD", "trial_days": -1}, {"trial_days": "must not be negative"}),
    ({"currency": "USD", "trial_days": "14"}, {"trial_days": "expected an integer"}),
    ({"currency": "USD", "charges": []}, {"charges": "expected a map"}),
    ({"currency": "USD", "charges": {"": {"model": "standard", "unit_price": "1"}}},
     {"charges": {"": "expected a meter name"}}),
    ({"currency": "USD", "charges": {"requests": {"model": "standard"}}},
     {"charges": {"requests": {"unit_price": "required field missing"}}}),
    ({"currency": "USD", "tz": "UTC"}, {"tz": "unknown field"}),
])
def test_each_bad_field_gets_its_message(data, errors):
    assert validate_plan(data) == errors
    with pytest.raises(InvalidDefinition) as caught:
        parse_plan(data)
    assert caught.value.fields == errors


def test_every_problem_of_a_plan_and_its_charges_is_reported_at_once():
    assert validate_plan({
        "interval": "fortnight", "base_fee": "1.0000000000001", "trial_days": 1.5,
        "charges": {"requests": {"model": "volume", "tiers": [{"up_to": 5, "unit_price": "1"}]},
                    "bytes": {"model": "package", "package_size": 1024, "package_price": "0.01"}},
    }) == {
        "currency": "required field missing",
        "interval": "expected one of: week, month, quarter, year",
        "base_fee": FORMAT,
        "trial_days": "expected an integer",
        "charges": {"requests": {"tiers": [{"up_to": "must be null on the last tier"}]}},
    }
