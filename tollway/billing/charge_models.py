"""Pricing a quantity with a charge: the exact amount and its tier breakdown.

Every model answers the same shape, a `Priced` with one `TierRow` per tier touched:
- standard: one row, the billable units (after free units) from unit `free_units + 1`, open ended;
- graduated: a row for each tier holding at least one unit (none at zero usage), so a tier's flat
  fee is charged only when one of its units is used;
- volume: one row, the tier holding the total, with every unit in it (none at zero usage);
- package: one row, the billable units, with `packages` the number of packages billed and
  `unit_price` the price of one package.
A row's `from` is the first unit the tier holds, counting from 1 (a tier after one up to 1000 starts
at 1001), and `to` its inclusive `up_to` (None: without end). Row amounts are exact; the line's
rounding happens once, in the quote. A Decimal quantity (a byte sum, a fraction of a unit) falls
in the tier whose range holds it: 1000.5 is past a tier up to 1000.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, DivisionImpossible, InvalidOperation
from typing import Any

from tollway.billing.charges import Charge, Graduated, Package, Standard, Tier, Volume
from tollway.billing.errors import AmountOutOfRange
from tollway.billing.money import EXACT, ZERO, add, decimal_text, multiply, quantity, subtract, total


@dataclass(frozen=True)
class TierRow:
    """The part of a charge one tier prices. `amount` = `units` × `unit_price` + `flat_fee`, except
    for a package row, where it is `packages` × `unit_price` (the price of one package)."""

    first_unit: int          # "from": the first unit the tier holds, counting from 1
    last_unit: int | None    # "to": its inclusive up_to; None when it has no end
    units: Decimal           # the units of the quantity this tier priced
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal          # exact, unrounded
    packages: int | None = None  # package model only: how many packages were billed

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "from": self.first_unit, "to": self.last_unit, "units": decimal_text(self.units),
            "unit_price": decimal_text(self.unit_price), "flat_fee": decimal_text(self.flat_fee),
            "amount": decimal_text(self.amount),
        }
        if self.packages is not None:
            row["packages"] = self.packages
        return row


@dataclass(frozen=True)
class Priced:
    """A quantity priced by a charge: the exact amount (the sum of its rows) and the rows."""

    units: Decimal
    amount: Decimal
    tiers: tuple[TierRow, ...]


def price(charge: Charge, units: int | Decimal) -> Priced:
    """The exact price of `units` (a non-negative int or Decimal) under `charge`, with its rows;
    InvalidQuantity for a negative, float or non-finite quantity."""
    count = quantity(units)
    if isinstance(charge, Standard):
        rows = _standard(charge, count)
    elif isinstance(charge, Graduated):
        rows = _graduated(charge.tiers, count)
    elif isinstance(charge, Volume):
        rows = _volume(charge.tiers, count)
    elif isinstance(charge, Package):
        rows = _package(charge, count)
    else:
        raise TypeError(f"not a charge: {charge!r}")
    return Priced(count, total(row.amount for row in rows), tuple(rows))


def _billable(count: Decimal, free_units: int) -> Decimal:
    return max(subtract(count, Decimal(free_units)), ZERO)


def _standard(charge: Standard, count: Decimal) -> list[TierRow]:
    billable = _billable(count, charge.free_units)
    amount = multiply(billable, charge.unit_price)
    return [TierRow(charge.free_units + 1, None, billable, charge.unit_price, ZERO, amount)]


def _tier_row(first_unit: int, tier: Tier, units: Decimal) -> TierRow:
    amount = add(multiply(units, tier.unit_price), tier.flat_fee)
    return TierRow(first_unit, tier.up_to, units, tier.unit_price, tier.flat_fee, amount)


def _graduated(tiers: tuple[Tier, ...], count: Decimal) -> list[TierRow]:
    rows = []
    below = 0  # the units held by the tiers before this one
    for tier in tiers:
        if count <= below:
            break
        upper = count if tier.up_to is None else min(count, Decimal(tier.up_to))
        rows.append(_tier_row(below + 1, tier, subtract(upper, Decimal(below))))
        if tier.up_to is None:
            break
        below = tier.up_to
    return rows


def _volume(tiers: tuple[Tier, ...], count: Decimal) -> list[TierRow]:
    if count == 0:
        return []
    below = 0
    for tier in tiers:
        if tier.up_to is None or count <= tier.up_to:
            return [_tier_row(below + 1, tier, count)]
        below = tier.up_to
    raise ValueError("the last tier has an up_to: the charge was not validated")


def _package(charge: Package, count: Decimal) -> list[TierRow]:
    billable = _billable(count, charge.free_units)
    try:
        whole, rest = EXACT.divmod(billable, Decimal(charge.package_size))
    except (DivisionImpossible, InvalidOperation) as exc:
        raise AmountOutOfRange(f"{billable} units are too many to count in packages") from exc
    packages = int(whole) + (1 if rest > 0 else 0)
    amount = multiply(Decimal(packages), charge.package_price)
    return [TierRow(charge.free_units + 1, None, billable, charge.package_price, ZERO, amount, packages)]
