"""Plan versions: a plan as one immutable definition, with the meters it prices and its entitlements.

A plan's head (the plan entity, its charges and entitlements, the meters they name) is edited
freely on the Admin API; a subscription never reads the head but a `PlanVersion`, a snapshot of
it numbered from 1, taken when a subscription first needs it (see plan_store.ensure_version).
Two snapshots are the same version when their canonical JSON is equal, so re-applying an
unchanged plan never makes a new one. The JSON form is what plan_versions.definition holds:

    {"name": "pro", "currency": "USD", "interval": "month", "billing_anchor": "calendar",
     "base_fee": "29", "trial_days": 0, "minimum_commitment": null,
     "charges": {"api-calls": {"model": "standard", "unit_price": "0.0015", "free_units": 0}},
     "meters": {"api-calls": {"name": "api-calls", "aggregation": "count", "field": null,
                              "service": null, "route": null, "status": ["2xx"]}},
     "entitlements": [{"meter": "api-calls", "limit": 1000, "period": "day", "enforcement": "hard"}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.billing.meters import Meter
from tollway.billing.plans import Plan, parse_plan

ENTITLEMENT_PERIODS = ("minute", "hour", "day", "month", "billing_period")
ENFORCEMENTS = ("hard", "soft")
CHARGE_FIELDS = ("unit_price", "free_units", "tiers", "package_size", "package_price")
PLAN_FIELDS = ("currency", "interval", "billing_anchor", "base_fee", "trial_days", "minimum_commitment")


@dataclass(frozen=True)
class Entitlement:
    """A limit of `limit` units of `meter` per `period`; hard: refused beyond it, soft: served and priced."""

    meter: Meter
    limit: int
    period: str
    enforcement: str

    def to_json(self, *, inline_meter: bool = False) -> dict[str, Any]:
        """The meter by name (a version's form), or the whole meter (a subscription phase's form)."""
        return {"meter": self.meter.to_json() if inline_meter else self.meter.name, "limit": self.limit,
                "period": self.period, "enforcement": self.enforcement}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], meters: Mapping[str, Meter] | None = None) -> Entitlement:
        meter = data["meter"]
        compiled = Meter.from_json(meter) if isinstance(meter, Mapping) else (meters or {})[meter]
        return cls(compiled, int(data["limit"]), data["period"], data["enforcement"])


@dataclass(frozen=True)
class PlanVersion:
    """One version of a plan: its pricing (the engine's Plan), meters and entitlements."""

    name: str
    plan: Plan
    meters: Mapping[str, Meter]
    entitlements: tuple[Entitlement, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.plan.to_json(),
                "meters": {name: meter.to_json() for name, meter in sorted(self.meters.items())},
                "entitlements": [entitlement.to_json() for entitlement in self.entitlements]}

    def canonical(self) -> bytes:
        """The JSON that decides whether two snapshots are one version."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanVersion:
        meters = {name: Meter.from_json(meter) for name, meter in data["meters"].items()}
        plan = parse_plan({key: data[key] for key in (*PLAN_FIELDS, "charges")})
        return cls(data["name"], plan, meters,
                   tuple(Entitlement.from_json(item, meters) for item in data["entitlements"]))

    @property
    def hard_entitlements(self) -> tuple[Entitlement, ...]:
        return tuple(entitlement for entitlement in self.entitlements if entitlement.enforcement == "hard")


def charge_definition(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A charge entity as the engine's JSON charge: its model and the fields it set."""
    return {"model": entity.get("model"),
            **{name: entity[name] for name in CHARGE_FIELDS if entity.get(name) is not None}}


def head_version(plan: Mapping[str, Any], charges: Iterable[Mapping[str, Any]],
                 entitlements: Iterable[Mapping[str, Any]], meters: Mapping[str, Mapping[str, Any]]) -> PlanVersion:
    """The version a plan's head describes: its entity, its charges' and entitlements' entities, and
    the meter entities they reference (by id). Charges are ordered by meter name; entitlements by
    meter name, then period in ENTITLEMENT_PERIODS' order."""
    def meter_of(entity: Mapping[str, Any]) -> Meter:
        return Meter.from_entity(meters[entity["meter"]["id"]])

    priced = sorted(((meter_of(charge), charge) for charge in charges), key=lambda pair: pair[0].name)
    limited = sorted(((meter_of(item), item) for item in entitlements),
                     key=lambda pair: (pair[0].name, ENTITLEMENT_PERIODS.index(pair[1]["period"])))
    definition = {name: plan.get(name) for name in PLAN_FIELDS}
    definition["charges"] = {meter.name: charge_definition(charge) for meter, charge in priced}
    used = {meter.name: meter for meter, _ in priced} | {meter.name: meter for meter, _ in limited}
    return PlanVersion(
        str(plan["name"]), parse_plan(definition), dict(sorted(used.items())),
        tuple(Entitlement(meter, int(item["limit"]), item["period"], item["enforcement"]) for meter, item in limited))
