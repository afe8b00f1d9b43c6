"""Charge definitions: the four charge models, and the validation that turns JSON into one.

    {"model": "standard",  "unit_price": "0.0015", "free_units": 1000}
    {"model": "graduated", "tiers": [{"up_to": 1000, "unit_price": "0"},
                                     {"up_to": null, "unit_price": "0.001", "flat_fee": "5"}]}
    {"model": "volume",    "tiers": [...same shape as graduated...]}
    {"model": "package",   "package_size": 100, "package_price": "5", "free_units": 0}

Prices are decimal strings (an int is accepted too, a float never) with at most 12 decimal places.
Tier `up_to` is an inclusive integer bound, strictly increasing, null on the last tier and only
there; `flat_fee` defaults to "0". `validate_charge` reports every problem at once in Kong's
`fields` shape (a message per field, a list with None for the fine elements of an array), which
the Admin API wraps as a schema violation; `parse_charge` raises it as InvalidDefinition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from tollway.billing.errors import InvalidDefinition
from tollway.billing.money import NEGATIVE, ZERO, decimal_text, parse_price

MODELS = ("standard", "graduated", "volume", "package")
REQUIRED = "required field missing"
UNKNOWN = "unknown field"
NOT_RECORD = "expected a record"

Errors = dict[str, Any]  # Kong's `fields` shape: field -> message, nested dict or list


@dataclass(frozen=True)
class Tier:
    """One tier: prices the units up to `up_to` inclusive (None: without end)."""

    up_to: int | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO

    def to_json(self) -> dict[str, Any]:
        return {"up_to": self.up_to, "unit_price": decimal_text(self.unit_price),
                "flat_fee": decimal_text(self.flat_fee)}


@dataclass(frozen=True)
class Standard:
    """`max(units - free_units, 0) × unit_price`."""

    model: ClassVar[str] = "standard"
    unit_price: Decimal
    free_units: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "unit_price": decimal_text(self.unit_price), "free_units": self.free_units}


@dataclass(frozen=True)
class Graduated:
    """Each tier prices the units that fall in it, plus its flat fee when at least one does."""

    model: ClassVar[str] = "graduated"
    tiers: tuple[Tier, ...]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "tiers": [tier.to_json() for tier in self.tiers]}


@dataclass(frozen=True)
class Volume:
    """The tier holding the total prices every unit, plus its flat fee; zero units cost nothing."""

    model: ClassVar[str] = "volume"
    tiers: tuple[Tier, ...]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "tiers": [tier.to_json() for tier in self.tiers]}


@dataclass(frozen=True)
class Package:
    """`ceil(max(units - free_units, 0) / package_size) × package_price`."""

    model: ClassVar[str] = "package"
    package_size: int
    package_price: Decimal
    free_units: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "package_size": self.package_size,
                "package_price": decimal_text(self.package_price), "free_units": self.free_units}


Charge = Standard | Graduated | Volume | Package

# model -> {field: required}
_FIELDS: dict[str, dict[str, bool]] = {
    "standard": {"unit_price": True, "free_units": False},
    "graduated": {"tiers": True},
    "volume": {"tiers": True},
    "package": {"package_size": True, "package_price": True, "free_units": False},
}
_CLASSES: dict[str, Callable[..., Charge]] = {
    "standard": Standard, "graduated": Graduated, "volume": Volume, "package": Package,
}
_TIER_FIELDS = ("up_to", "unit_price", "flat_fee")


def model_rules() -> dict[str, Any]:
    """What _check asks of the fields by model, as JSON Schema (for the OpenAPI document): a model's
    required fields set (not null), and the fields only other models use absent or null."""
    null = {"nullable": True, "enum": [None]}
    return {"anyOf": [{"properties": {"model": {"enum": [model]},
                                      **{name: {"not": null} for name, required in fields.items() if required},
                                      **{name: null for name in sorted(_MODEL_FIELDS) if name not in fields}},
                       "required": ["model", *(name for name, required in fields.items() if required)]}
                      for model, fields in _FIELDS.items()]}


def parse_charge(data: object) -> Charge:
    """The charge a JSON definition describes; InvalidDefinition listing every problem otherwise."""
    charge, errors = _check(data)
    if charge is None:
        raise InvalidDefinition(errors)
    return charge


def validate_charge(data: object) -> Errors:
    """Every problem of a JSON charge definition, in Kong's `fields` shape; {} when it is valid."""
    return _check(data)[1]


def _check(data: object) -> tuple[Charge | None, Errors]:
    if not isinstance(data, Mapping):
        return None, {"@entity": [NOT_RECORD]}
    model = data.get("model")
    if model is None:
        return None, {"model": REQUIRED}
    if not isinstance(model, str) or model not in _FIELDS:
        return None, {"model": "expected one of: " + ", ".join(MODELS)}
    fields = _FIELDS[model]
    errors: Errors = {key: f"not used by the {model} model" if key in _MODEL_FIELDS else UNKNOWN
                      for key in data if key != "model" and key not in fields}
    values: dict[str, Any] = {}
    for name, required in fields.items():
        if data.get(name) is None:
            if required:
                errors[name] = REQUIRED
            continue
        value, error = _CHECKS[name](data[name])
        if error is not None:
            errors[name] = error
        else:
            values[name] = value
    if errors:
        return None, errors
    return _CLASSES[model](**values), {}


def check_price(value: object) -> tuple[Decimal | None, str | None]:
    """(the price, None) or (None, the message saying what was expected)."""
    try:
        return parse_price(value), None
    except ValueError as exc:
        return None, str(exc)


def check_count(value: object, least: int = 0) -> tuple[int | None, str | None]:
    """(the integer, None) or (None, a message): an int (not a bool) of at least `least`."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None, "expected an integer"
    if value < least:
        return None, NEGATIVE if least == 0 else f"value must be at least {least}"
    return value, None


def _check_tiers(value: object) -> tuple[tuple[Tier, ...] | None, Any]:
    if not isinstance(value, list | tuple):
        return None, "expected an array"
    if not value:
        return None, "length must be at least 1"
    tiers: list[Tier] = []
    errors: list[Any] = []
    highest: int | None = None  # the largest valid up_to so far, to check the order against
    for index, item in enumerate(value):
        last = index == len(value) - 1
        if not isinstance(item, Mapping):
            errors.append(NOT_RECORD)
            continue
        problems: Errors = {key: UNKNOWN for key in item if key not in _TIER_FIELDS}
        up_to = item.get("up_to")
        if up_to is None:
            if not last:
                problems["up_to"] = "must be set on every tier but the last"
        elif not isinstance(up_to, int) or isinstance(up_to, bool):
            problems["up_to"] = "expected an integer"
        elif last:
            problems["up_to"] = "must be null on the last tier"
        elif up_to < 1:
            problems["up_to"] = "value must be at least 1"
        elif highest is not None and up_to <= highest:
            problems["up_to"] = f"must be greater than the previous tier's up_to ({highest})"
        if isinstance(up_to, int) and not isinstance(up_to, bool):
            highest = up_to if highest is None else max(highest, up_to)
        raw_price = item.get("unit_price")
        unit_price, error = (None, REQUIRED) if raw_price is None else check_price(raw_price)
        if error is not None:
            problems["unit_price"] = error
        raw_fee = item.get("flat_fee")
        flat_fee, error = check_price("0" if raw_fee is None else raw_fee)
        if error is not None:
            problems["flat_fee"] = error
        errors.append(problems or None)
        if not problems and unit_price is not None and flat_fee is not None:
            tiers.append(Tier(up_to, unit_price, flat_fee))
    if any(errors):
        return None, errors
    return tuple(tiers), None


_CHECKS: dict[str, Callable[[object], tuple[Any, Any]]] = {
    "unit_price": check_price,
    "package_price": check_price,
    "free_units": check_count,
    "package_size": lambda value: check_count(value, 1),
    "tiers": _check_tiers,
}
_MODEL_FIELDS = frozenset(_CHECKS)  # fields some model uses: named as such when another model gets them
