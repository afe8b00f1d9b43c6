"""ISO 4217: every active code with its minor unit; codes without one are refused for pricing."""

from __future__ import annotations

import pytest

from tollway.billing.currency import ISO_4217, Currency, currency
from tollway.billing.errors import UnknownCurrency


def test_the_table_holds_every_active_code_of_list_one():
    assert len(ISO_4217) == 178
    assert sum(exponent is not None for exponent in ISO_4217.values()) == 165


@pytest.mark.parametrize(("code", "exponent"), [
    ("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("VND", 0),
    ("XOF", 0), ("UGX", 0), ("KWD", 3), ("BHD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3), ("IQD", 3),
    ("LYD", 3), ("CLF", 4), ("UYW", 4), ("XCG", 2), ("SLE", 2), ("ZWG", 2), ("VED", 2), ("HUF", 2),
])
def test_minor_units_follow_iso_4217(code, exponent):
    assert currency(code) == Currency(code, exponent)


def test_minor_per_major():
    assert currency("JPY").minor_per_major == 1
    assert currency("USD").minor_per_major == 100
    assert currency("KWD").minor_per_major == 1000


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPD", "XPT", "XDR", "XSU", "XUA", "XBA", "XTS", "XXX"])
def test_codes_without_a_minor_unit_are_refused_with_their_own_reason(code):
    with pytest.raises(UnknownCurrency) as caught:
        currency(code)
    assert caught.value.reason == f"{code} has no minor unit in ISO 4217 and cannot be priced"


@pytest.mark.parametrize("code", ["ABC", "usd", "ANG", "HRK", "SLL", "ZWL", "BGN", "CUC", "", 840, None])
def test_unknown_lowercase_and_withdrawn_codes_are_refused(code):
    with pytest.raises(UnknownCurrency) as caught:
        currency(code)
    assert caught.value.reason == "expected an active ISO 4217 currency code"
