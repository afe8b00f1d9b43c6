"""Tollway's billing: a pure pricing engine, and the meters, plans and subscriptions that feed it.

The engine (Decimal in, Decimal out, no database and no I/O), re-exported below:

    currency.py       ISO 4217 table, `currency("USD") -> Currency(code, exponent)`
    money.py          exact Decimal context, price parsing, rounding once half up, minor units
    charges.py        charge definitions (standard, graduated, volume, package) and their validation
    charge_models.py  `price(charge, units) -> Priced`: exact amount and tier breakdown
    periods.py        `BillingCycle`: calendar or anniversary weeks, months, quarters, years in a tz
    proration.py      `Share` of a period by local days (start, change, end, trial), commitment true-up
    plans.py          plan definitions and their validation
    quote.py          `quote(plan, usage)` and `price_period(plan, usage, share) -> Quote` with its lines

Pure too, over the engine: what is counted and what a subscription is entitled to, when:

    meters.py         `Meter`: count or sum of the ledger, filtered by service, route and status
    versions.py       `PlanVersion`: a plan with its meters and entitlements, as immutable JSON
    windows.py        entitlement windows (minute ... billing_period) in the subscription's zone
    subscriptions.py  `Timeline`: a subscription's phases (plan versions over time), changes, cancels
    usage.py          a subscription's current period: figures to read, then units, money, limits
    gate.py           the hard entitlements a call counts against, from a worker's snapshot
    invoicing.py      a subscription's billing windows, their segments (plan versions) and invoice lines
    invoice_documents.py  an invoice as JSON, CSV (the finance export) and a printable HTML page

The database and the Admin API (core component "billing", tollway.plugins.registry):

    tables.py, migrations/   the tables; daos.py their entities (generic CRUD)
    plan_store.py            a plan's head as a version, recorded versions
    subscription_writes.py   subscription writes that keep the timeline
    ledger_usage.py          meter figures read exactly from the usage ledger
    usage_reads.py           usage answers of a consumer, or of every subscription
    simulation.py            POST /pricing/simulate and `tollway pricing simulate`
    invoice_store.py         invoices, lines, credit notes and number sequences: whole writes
    invoice_run.py           the billing run: drafts, refreshes, finalizing (services.py runs it)
    api_invoices.py, cli_invoices.py   /invoices, /credit_notes and `tollway invoices`
    api.py, api_subscriptions.py, api_docs.py   billing's own routes and their OpenAPI entries
    plans_file.py, plans_apply.py, cli.py       `tollway plans apply FILE`, `tollway pricing simulate`

The engine imports nothing above tollway.billing but tollway.errors and tollway.metering.periods;
the pure modules add tollway.counters (gate.py); the others read the store and the ledger.
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
