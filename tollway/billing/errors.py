"""The billing engine's errors.

    TollwayError (tollway.errors)
    └── BillingError             anything the billing engine refuses
        ├── InvalidDefinition    a plan or charge definition breaks the rules; `.fields` holds every
        │                        problem in Kong's `fields` shape (Admin API: schema violation, 400)
        ├── UnknownCurrency      not an active ISO 4217 code, or one with no minor unit (XAU, XDR...)
        ├── InvalidQuantity      a usage quantity that is not a non-negative integer or finite Decimal
        ├── UnknownMeter         usage given for a meter the plan does not price
        ├── UnknownTimeZone      not an IANA time zone name
        ├── AmountOutOfRange     a figure too large to be computed exactly
        ├── SubscriptionConflict a consumer would have two subscriptions at once (Admin API: 409)
        ├── TimelineError        a change a subscription's timeline cannot take (400; subscriptions.py)
        └── RetentionExceeded    usage that needs ledger rows past their retention (ledger_usage.py)
"""

from __future__ import annotations

from typing import Any

from tollway.errors import TollwayError


class BillingError(TollwayError):
    """Base of every error the billing engine raises on purpose."""


class InvalidDefinition(BillingError):
    """A definition with one or more problems, all listed in `fields` (field -> message, nested)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        super().__init__(f"invalid definition: {fields!r}")


class UnknownCurrency(BillingError):
    """`reason` is the short message for the `currency` field of a definition."""

    def __init__(self, code: object, reason: str = "expected an active ISO 4217 currency code") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code!r}: {reason}")


class InvalidQuantity(BillingError):
    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(f"expected a non-negative integer or finite Decimal quantity, got {value!r}")


class UnknownMeter(BillingError):
    def __init__(self, meter: str) -> None:
        self.meter = meter
        super().__init__(f"the plan has no charge for meter {meter!r}")


class UnknownTimeZone(BillingError):
    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"{name!r} is not an IANA time zone")


class AmountOutOfRange(BillingError):
    """An amount would need more digits than the exact context holds (a bad input, not a real bill)."""


class SubscriptionConflict(BillingError):
    """The consumer already has a subscription over that time: `other` is its id."""

    def __init__(self, other: str) -> None:
        self.other = other
        super().__init__(f"the consumer already has a subscription over that time ({other}): "
                         "cancel it, or change its plan with a PATCH")
