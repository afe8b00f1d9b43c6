"""Tollway's pricing engine: pure money logic, Decimal in and Decimal out, no database and no I/O.

    currency.py       ISO 4217 table, `currency("USD") -> Currency(code, exponent)`
    money.py          exact Decimal context, price parsing, rounding once half up, minor units
    charges.py        charge definitions (standard, graduated, volume, package) and their validation
    charge_models.py  `price(charge, units) -> Priced`: exact amount and tier breakdown
    periods.py        `BillingCycle`: calendar or anniversary weeks, months, quarters, years in a tz
    proration.py      `Share` of a period by local days (start, change, end, trial), commitment true-up
    plans.py          plan definitions and their validation
    quote.py          `quote(plan, usage)` and `price_period(plan, usage, share) -> Quote` with its lines

Arrows point down the list; the modules import nothing above tollway.billing but tollway.errors and
tollway.metering.periods.
"""

from tollway.billing.charge_models import Priced, TierRow, price
from tollway.billing.charges import Graduated, Package, Standard, Tier, Volume, parse_charge, validate_charge
from tollway.billing.currency import ISO_4217, Currency, currency
from tollway.billing.errors import (
    AmountOutOfRange,
    BillingError,
    InvalidDefinition,
    InvalidQuantity,
    UnknownCurrency,
    UnknownMeter,
    UnknownTimeZone,
)
from tollway.billing.periods import BillingCycle, BillingPeriod
from tollway.billing.plans import Plan, parse_plan, validate_plan
from tollway.billing.proration import Share, billable_share, commitment_true_up, prorate, trial_end
from tollway.billing.quote import Line, Quote, price_period, quote

__all__ = [
    "AmountOutOfRange", "BillingCycle", "BillingError", "BillingPeriod", "Currency", "Graduated", "ISO_4217",
    "InvalidDefinition", "InvalidQuantity", "Line", "Package", "Plan", "Priced", "Quote", "Share", "Standard",
    "Tier", "TierRow", "UnknownCurrency", "UnknownMeter", "UnknownTimeZone", "Volume", "billable_share",
    "commitment_true_up", "currency", "parse_charge", "parse_plan", "price", "price_period", "prorate", "quote",
    "trial_end", "validate_charge", "validate_plan",
]
