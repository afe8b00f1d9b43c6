"""Plan definitions: currency, billing cycle, base fee, trial, minimum commitment, charges per meter.

    {"currency": "USD", "interval": "month", "billing_anchor": "calendar", "base_fee": "29",
     "trial_days": 14, "minimum_commitment": "100",
     "charges": {"requests": {"model": "standard", "unit_price": "0.0015"}}}

`currency` is required; `interval` defaults to "month", `billing_anchor` to "calendar", `base_fee`
(charged in advance) to "0", `trial_days` to 0, `minimum_commitment` to none and `charges` to none.
`validate_plan` reports every problem at once in Kong's `fields` shape, a charge's under
`charges.<meter>`; `parse_plan` raises them as InvalidDefinition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tollway.billing.charges import (
    NOT_RECORD,
    UNKNOWN,
    Charge,
    Errors,
    check_count,
    check_price,
    parse_charge,
    validate_charge,
)
from tollway.billing.currency import Currency, currency
from tollway.billing.errors import InvalidDefinition, UnknownCurrency
from tollway.billing.money import ZERO, decimal_text
from tollway.billing.periods import ANCHORS, INTERVALS, BillingCycle

_FIELDS = ("currency", "interval", "billing_anchor", "base_fee", "trial_days", "minimum_commitment", "charges")


@dataclass(frozen=True)
class Plan:
    """A validated plan. `charges` maps a meter's name to its charge, in the order given."""

    currency: Currency
    interval: str = "month"
    billing_anchor: str = "calendar"
    base_fee: Decimal = ZERO
    trial_days: int = 0
    minimum_commitment: Decimal | None = None
    charges: Mapping[str, Charge] = field(default_factory=dict)

    def cycle(self, tz: str | ZoneInfo, started_at: int) -> BillingCycle:
        """The billing cycle of a subscription to this plan started at epoch `started_at` in `tz`."""
        return BillingCycle.for_subscription(self.interval, self.billing_anchor, tz, started_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency.code, "interval": self.interval, "billing_anchor": self.billing_anchor,
            "base_fee": decimal_text(self.base_fee), "trial_days": self.trial_days,
            "minimum_commitment": None if self.minimum_commitment is None else decimal_text(self.minimum_commitment),
            "charges": {meter: charge.to_json() for meter, charge in self.charges.items()},
        }


def parse_plan(data: object) -> Plan:
    """The plan a JSON definition describes; InvalidDefinition listing every problem otherwise."""
    errors = validate_plan(data)
    if errors:
        raise InvalidDefinition(errors)
    assert isinstance(data, Mapping)
    optional = {name: data[name] for name in ("interval", "billing_anchor", "trial_days") if data.get(name) is not None}
    return Plan(
        currency=currency(data["currency"]),
        base_fee=_price(data.get("base_fee")) or ZERO,
        minimum_commitment=_price(data.get("minimum_commitment")),
        charges={meter: parse_charge(charge) for meter, charge in (data.get("charges") or {}).items()},
        **optional,
    )


def validate_plan(data: object) -> Errors:
    """Every problem of a JSON plan definition, in Kong's `fields` shape; {} when it is valid."""
    if not isinstance(data, Mapping):
        return {"@entity": [NOT_RECORD]}
    errors: Errors = {key: UNKNOWN for key in data if key not in _FIELDS}
    code = data.get("currency")
    if code is None:
        errors["currency"] = "required field missing"
    else:
        try:
            currency(code)
        except UnknownCurrency as exc:
            errors["currency"] = exc.reason
    for name, choices in (("interval", INTERVALS), ("billing_anchor", ANCHORS)):
        if data.get(name) is not None and data[name] not in choices:
            errors[name] = "expected one of: " + ", ".join(choices)
    for name in ("base_fee", "minimum_commitment"):
        if data.get(name) is not None and (message := check_price(data[name])[1]) is not None:
            errors[name] = message
    if data.get("trial_days") is not None and (message := check_count(data["trial_days"])[1]) is not None:
        errors["trial_days"] = message
    charges = data.get("charges")
    if charges is not None:
        if not isinstance(charges, Mapping):
            errors["charges"] = "expected a map"
        else:
            problems = {meter: _charge_problems(meter, charge) for meter, charge in charges.items()}
            problems = {meter: problem for meter, problem in problems.items() if problem}
            if problems:
                errors["charges"] = problems
    return errors


def _charge_problems(meter: object, charge: object) -> Any:
    if not isinstance(meter, str) or not meter:
        return "expected a meter name"
    return validate_charge(charge)


def _price(value: object) -> Decimal | None:
    return None if value is None else check_price(value)[0]
