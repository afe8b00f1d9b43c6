"""Quotes: a plan's lines for some usage, each rounded once, and their total.

`quote(plan, usage)` prices one whole period: the base fee line, then a usage line per charge in
the plan's order. It is what `POST /pricing/simulate` answers. `price_period(plan, usage, share)`
is what an invoice builds on: the base fee prorated by the billed share of the period (see
proration.billable_share, which also leaves out the trial), the usage lines unchanged (the caller
passes the usage it bills), and, when the plan has a minimum commitment, its true-up line.

Every line has the same shape, kind-specific keys null or empty:
    {"kind": "base_fee" | "usage" | "minimum_commitment", "meter", "model", "units", "tiers",
     "price", "proration", "amount": "12.35", "amount_minor": 1235}
The total is the sum of the rounded lines, never a rounding of an exact sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tollway.billing.charge_models import TierRow, price
from tollway.billing.currency import Currency
from tollway.billing.errors import UnknownMeter
from tollway.billing.money import decimal_text, from_minor, minor_units, round_amount
from tollway.billing.plans import Plan
from tollway.billing.proration import Share, commitment_true_up, prorate


@dataclass(frozen=True)
class Line:
    """One line of a quote or invoice: `amount` is rounded once, half up, to the minor unit."""

    kind: str                       # "base_fee", "usage" or "minimum_commitment"
    amount: Decimal
    amount_minor: int
    meter: str | None = None        # usage: the meter priced
    model: str | None = None        # usage: its charge model
    units: Decimal | None = None    # usage: the quantity priced
    tiers: tuple[TierRow, ...] = ()  # usage: the exact breakdown
    price: Decimal | None = None    # base fee, commitment: the amount for a whole period
    share: Share | None = None      # base fee, commitment: the part of the period billed

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "meter": self.meter, "model": self.model,
            "units": None if self.units is None else decimal_text(self.units),
            "tiers": [row.to_json() for row in self.tiers],
            "price": None if self.price is None else decimal_text(self.price),
            "proration": None if self.share is None else self.share.to_json(),
            "amount": format(self.amount, "f"), "amount_minor": self.amount_minor,
        }


@dataclass(frozen=True)
class Quote:
    """A period's lines in one currency; the total is the sum of their rounded amounts."""

    currency: Currency
    lines: tuple[Line, ...]

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def total(self) -> Decimal:
        return from_minor(self.total_minor, self.currency)

    @property
    def base_fee(self) -> Line:
        return next(line for line in self.lines if line.kind == "base_fee")

    def to_json(self) -> dict[str, Any]:
        return {"currency": self.currency.code, "lines": [line.to_json() for line in self.lines],
                "total": format(self.total, "f"), "total_minor": self.total_minor}


def quote(plan: Plan, usage: Mapping[str, int | Decimal]) -> Quote:
    """The lines of one whole period of `plan` for `usage` (meter -> quantity; a meter left out used
    nothing): the base fee in full, then a line per charge. UnknownMeter for usage of a meter the
    plan does not price, InvalidQuantity for a quantity that is not a non-negative int or Decimal."""
    return Quote(plan.currency, (_base_fee_line(plan, None), *_usage_lines(plan, usage)))


def price_period(plan: Plan, usage: Mapping[str, int | Decimal], share: Share) -> Quote:
    """The lines an invoice bills for one period: the base fee for `share` of it, the usage lines,
    and the minimum commitment's true-up (prorated by the same share) when the plan has one."""
    lines = [_base_fee_line(plan, share), *_usage_lines(plan, usage)]
    if plan.minimum_commitment is not None:
        charged = sum(line.amount_minor for line in lines)
        true_up = commitment_true_up(plan.minimum_commitment, share, charged, plan.currency)
        lines.append(_line(plan.currency, "minimum_commitment", true_up.amount,
                           price=plan.minimum_commitment, share=share))
    return Quote(plan.currency, tuple(lines))


def _base_fee_line(plan: Plan, share: Share | None) -> Line:
    if share is None:
        amount = round_amount(plan.base_fee, plan.currency)
    else:
        amount = prorate(plan.base_fee, share, plan.currency)
    return _line(plan.currency, "base_fee", amount, price=plan.base_fee, share=share)


def _usage_lines(plan: Plan, usage: Mapping[str, int | Decimal]) -> list[Line]:
    for meter in usage:
        if meter not in plan.charges:
            raise UnknownMeter(meter)
    lines = []
    for meter, charge in plan.charges.items():
        priced = price(charge, usage.get(meter, 0))
        lines.append(_line(plan.currency, "usage", round_amount(priced.amount, plan.currency), meter=meter,
                           model=charge.model, units=priced.units, tiers=priced.tiers))
    return lines


def _line(currency: Currency, kind: str, amount: Decimal, **details: Any) -> Line:
    return Line(kind, amount, minor_units(amount, currency), **details)
