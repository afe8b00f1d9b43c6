"""Exact money: prices parsed strictly, one rounding per line, half up, to the minor unit."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import pytest

from tollway.billing.currency import currency
from tollway.billing.errors import AmountOutOfRange, InvalidQuantity
from tollway.billing.money import (
    amount_text,
    decimal_text,
    from_minor,
    minor_units,
    multiply,
    parse_price,
    quantity,
    round_amount,
    total,
)

USD, JPY, KWD = currency("USD"), currency("JPY"), currency("KWD")
FORMAT = "expected a decimal string with at most 12 decimal places"


@pytest.mark.parametrize(("text", "expected"), [
    ("0", Decimal("0")), ("0.0015", Decimal("0.0015")), ("12", Decimal("12")), (7, Decimal("7")),
    ("0.000000000001", Decimal("0.000000000001")), ("999999999999999999.5", Decimal("999999999999999999.5")),
    ("000012.50", Decimal("12.50")), (Decimal("1.25"), Decimal("1.25")),
])
def test_prices_are_parsed_exactly(text, expected):
    assert parse_price(text) == expected


@pytest.mark.parametrize("text", [
    "", " 1", "1 ", "+1", "1.", ".5", "1e-3", "1E3", "0x10", "1,5", "1/2", "NaN", "Infinity", "abc",
    "0.0000000000001", 0.5, 1.0, True, None, [], Decimal("NaN"),
])
def test_malformed_prices_and_floats_are_refused(text):
    with pytest.raises(ValueError, match=f"^{FORMAT}$"):
        parse_price(text)


@pytest.mark.parametrize("text", ["-1", "-0.0015", -3])
def test_negative_prices_are_refused(text):
    with pytest.raises(ValueError, match="^must not be negative$"):
        parse_price(text)


def test_prices_of_more_than_18_integer_digits_are_refused():
    with pytest.raises(ValueError, match="^expected at most 18 digits before the decimal point$"):
        parse_price("1000000000000000000")


@pytest.mark.parametrize(("amount", "cur", "rounded", "minor"), [
    (Decimal("0.125"), USD, "0.13", 13),      # half even: 0.12
    (Decimal("0.135"), USD, "0.14", 14),
    (Decimal("0.124999"), USD, "0.12", 12),
    (Decimal("2.5"), JPY, "3", 3),            # half even: 2
    (Decimal("3.5"), JPY, "4", 4),
    (Decimal("2.4999"), JPY, "2", 2),
    (Decimal("0.0125"), KWD, "0.013", 13),    # half even: 0.012
    (Decimal("1234.5675"), KWD, "1234.568", 1234568),
    (Decimal("0"), USD, "0.00", 0),
    (Decimal("12.3"), USD, "12.30", 1230),
])
def test_rounding_is_half_up_to_the_minor_unit(amount, cur, rounded, minor):
    result = round_amount(amount, cur)
    assert format(result, "f") == rounded
    assert minor_units(result, cur) == minor
    assert amount_text(amount, cur) == rounded


@pytest.mark.parametrize(("amount", "cur", "rounded"), [
    (Fraction(1, 8), USD, "0.13"),        # 0.125
    (Fraction(5, 2), JPY, "3"),
    (Fraction(1, 80), KWD, "0.013"),      # 0.0125
    (Fraction(638, 31), USD, "20.58"),    # 29 × 22/31 = 20.5806...
    (Fraction(-1, 8), USD, "-0.13"),      # a tie rounds away from zero, as Decimal's ROUND_HALF_UP
])
def test_fractions_round_exactly_half_up(amount, cur, rounded):
    assert format(round_amount(amount, cur), "f") == rounded


def test_the_global_decimal_context_does_not_change_results():
    with localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = ROUND_HALF_EVEN
        assert multiply(Decimal("123456789"), Decimal("0.0015")) == Decimal("185185.1835")
        assert format(round_amount(Decimal("0.125"), USD), "f") == "0.13"
        assert total([Decimal("0.0001"), Decimal("100000")]) == Decimal("100000.0001")


def test_an_amount_too_large_to_hold_exactly_raises():
    with pytest.raises(AmountOutOfRange):
        multiply(Decimal("1" + "0" * 120 + "1"), Decimal("0.5"))  # 123 significant digits


def test_minor_units_refuse_an_unrounded_amount():
    with pytest.raises(ValueError):
        minor_units(Decimal("0.125"), USD)


def test_from_minor_carries_the_currency_decimals():
    assert format(from_minor(1235, USD), "f") == "12.35"
    assert format(from_minor(0, USD), "f") == "0.00"
    assert format(from_minor(3, JPY), "f") == "3"
    assert format(from_minor(13, KWD), "f") == "0.013"


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("0.1500"), "0.15"), (Decimal("1E+2"), "100"), (Decimal("0E-12"), "0"), (Decimal("-0"), "0"),
    (Decimal("6.0000"), "6"), (Decimal("0.000000000001"), "0.000000000001"),
])
def test_decimal_text_is_plain_fixed_point(value, text):
    assert decimal_text(value) == text


@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None, Decimal("-0.5"), Decimal("NaN"), Decimal("Infinity")])
def test_quantities_must_be_non_negative_ints_or_finite_decimals(value):
    with pytest.raises(InvalidQuantity):
        quantity(value)


def test_quantities_accept_ints_and_decimals():
    assert quantity(0) == 0
    assert quantity(10**20) == Decimal("100000000000000000000")
    assert quantity(Decimal("1.5")) == Decimal("1.5")
