"""Exact decimal arithmetic for money: parsing prices, exact sums and products, rounding a line once.

Every computation runs in `EXACT`, a local context (never the thread's global one) of 100 digits
that traps Inexact: a result that cannot be held exactly raises AmountOutOfRange instead of being
rounded silently. The only rounding is `round_amount`, once per line, half up (away from zero on a
tie; Python's default is half even), to the currency's minor unit. Floats are refused everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction

from tollway.billing.currency import Currency
from tollway.billing.errors import AmountOutOfRange, InvalidQuantity

PRICE_PLACES = 12          # prices carry at most this many decimals ("0.0015")
PRICE_INTEGER_DIGITS = 18  # and at most this many before the point: a price fits NUMERIC(30, 12)

EXACT = Context(prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
# Rounding to a minor unit is meant to be inexact: same precision, no Inexact trap.
ROUNDING = Context(prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, DivisionByZero, Overflow])

ZERO = Decimal(0)
PRICE_FORMAT = f"expected a decimal string with at most {PRICE_PLACES} decimal places"
PRICE_TOO_LARGE = f"expected at most {PRICE_INTEGER_DIGITS} digits before the decimal point"
NEGATIVE = "must not be negative"

_DECIMAL_TEXT = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")


def parse_price(value: object) -> Decimal:
    """A price ("0.0015", or an int) as an exact Decimal; ValueError with a short message if it is
    malformed, negative, has more than 12 decimal places or more than 18 integer digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, Decimal) and value.is_finite():
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(PRICE_FORMAT)  # floats included: 0.1 is not a tenth
    match = _DECIMAL_TEXT.fullmatch(text)
    if match is None or len(match.group(2) or "") > PRICE_PLACES:
        raise ValueError(PRICE_FORMAT)
    price = Decimal(text)
    if price < 0:
        raise ValueError(NEGATIVE)
    if len(match.group(1).lstrip("0")) > PRICE_INTEGER_DIGITS:
        raise ValueError(PRICE_TOO_LARGE)
    return price


def quantity(value: object) -> Decimal:
    """A usage quantity as a Decimal: a non-negative int, or a finite non-negative Decimal (a byte
    sum, a fraction of a unit); InvalidQuantity for anything else, floats and bools included."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite() and value >= 0:
        return value
    raise InvalidQuantity(value)


def multiply(a: Decimal, b: Decimal) -> Decimal:
    """a × b, exactly."""
    return _exactly(EXACT.multiply, a, b)


def add(a: Decimal, b: Decimal) -> Decimal:
    """a + b, exactly."""
    return _exactly(EXACT.add, a, b)


def subtract(a: Decimal, b: Decimal) -> Decimal:
    """a − b, exactly."""
    return _exactly(EXACT.subtract, a, b)


def total(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of `values` (0 when there are none)."""
    result = ZERO
    for value in values:
        result = add(result, value)
    return result


def _exactly(operation: Callable[[Decimal, Decimal], Decimal], a: Decimal, b: Decimal) -> Decimal:
    try:
        return operation(a, b)
    except (Inexact, Overflow) as exc:
        raise AmountOutOfRange(f"{a} and {b} give a result too large to compute exactly") from exc


def round_amount(amount: Decimal | Fraction, currency: Currency) -> Decimal:
    """`amount` rounded half up (away from zero on a tie) to the currency's minor unit: 0.125 USD ->
    0.13, 2.5 JPY -> 3, 0.0125 KWD -> 0.013. A Fraction (a prorated fee) is rounded exactly too."""
    if isinstance(amount, Fraction):
        scaled = abs(amount) * currency.minor_per_major
        minor = (2 * scaled.numerator + scaled.denominator) // (2 * scaled.denominator)  # floor(x + 1/2)
        return Decimal(minor if amount >= 0 else -minor).scaleb(-currency.exponent, EXACT)
    quantum = Decimal(1).scaleb(-currency.exponent)
    try:
        return amount.quantize(quantum, rounding=ROUND_HALF_UP, context=ROUNDING)
    except InvalidOperation as exc:
        raise AmountOutOfRange(f"{amount} is too large to round") from exc


def minor_units(amount: Decimal, currency: Currency) -> int:
    """An amount already rounded to the currency's minor unit, as an integer of minor units
    (12.35 USD -> 1235); ValueError if it is not so rounded."""
    scaled = amount.scaleb(currency.exponent, EXACT)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} is not rounded to {currency.code}'s minor unit")
    return int(scaled)


def from_minor(minor: int, currency: Currency) -> Decimal:
    """Integer minor units as an amount with the currency's decimals (1235 USD -> 12.35)."""
    return Decimal(minor).scaleb(-currency.exponent, EXACT)


def amount_text(amount: Decimal, currency: Currency) -> str:
    """A rounded amount as JSON carries it: fixed point with the currency's decimals ("12.30", "3")."""
    return format(round_amount(amount, currency), "f")


def decimal_text(value: Decimal) -> str:
    """An exact Decimal in plain fixed point without trailing zeros ("0.15", "100", "0")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
