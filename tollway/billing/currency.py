"""ISO 4217 currencies and their minor units (the number of decimals an amount is rounded to).

The table is ISO 4217 list one (active codes) as published on 2026-01-01: it has XCG (not ANG,
withdrawn in 2025), SLE (not SLL), ZWG (not ZWL), no BGN (Bulgaria joined the euro on 2026-01-01),
and the fund and index codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW) with their own minor units.

Thirteen codes have no minor unit in ISO 4217 ("N.A."): the precious metals (XAU, XAG, XPD, XPT),
the units of account (XDR, XSU, XUA, XBA, XBB, XBC, XBD) and the test and no-currency codes (XTS,
XXX). They are kept in the table with `None` and refused for pricing with their own message:
rounding an ounce of gold to any number of decimals would be our invention, not a standard.
"""

from __future__ import annotations

from typing import NamedTuple

from tollway.billing.errors import UnknownCurrency


class Currency(NamedTuple):
    """A currency that amounts can be priced in: its code and its minor unit exponent."""

    code: str
    exponent: int  # JPY 0, USD 2, KWD 3: amounts are rounded to this many decimals

    @property
    def minor_per_major(self) -> int:
        """How many minor units make one major unit (100 for USD)."""
        return 10**self.exponent


_BY_EXPONENT: dict[int | None, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
        "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
        "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
        "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO "
        "NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS "
        "SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST "
        "XAD XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    None: "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX",
}

# code -> minor unit exponent, or None where ISO 4217 defines no minor unit
ISO_4217: dict[str, int | None] = {
    code: exponent for exponent, codes in _BY_EXPONENT.items() for code in codes.split()
}


def currency(code: object) -> Currency:
    """The currency for an ISO 4217 code ("USD"); UnknownCurrency if it is not one that can be priced."""
    if not isinstance(code, str) or code not in ISO_4217:
        raise UnknownCurrency(code)
    exponent = ISO_4217[code]
    if exponent is None:
        raise UnknownCurrency(code, f"{code} has no minor unit in ISO 4217 and cannot be priced")
    return Currency(code, exponent)
