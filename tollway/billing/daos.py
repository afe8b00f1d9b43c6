"""Billing's entities on the Admin API: meters, plans with their charges and entitlements, and
consumers' subscriptions. Generic CRUD comes from these schemas (tollway.store.entities); writes
to subscriptions go through api_subscriptions.py, which keeps their timeline.

    /meters[/{id or name}]
    /plans[/{id or name}]
    /plans/{plan}/charges[/{id}]          also /charges[/{id}]
    /plans/{plan}/entitlements[/{id}]     also /entitlements[/{id}]
    /consumers/{consumer}/subscriptions[/{id}]   also /subscriptions[/{id}]

Only subscriptions go to proxy workers (in_snapshot), trimmed to what enforcing hard entitlements
needs (see gate.py); meters, plans, charges and prices never leave the master.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from zoneinfo import available_timezones

from tollway.billing import tables
from tollway.billing.charges import MODELS, model_rules, validate_charge
from tollway.billing.currency import ISO_4217
from tollway.billing.meters import AGGREGATIONS, SUM_FIELDS, meter_problems
from tollway.billing.money import PRICE_INTEGER_DIGITS, PRICE_PLACES
from tollway.billing.periods import ANCHORS, INTERVALS
from tollway.billing.plans import validate_plan
from tollway.billing.versions import ENFORCEMENTS, ENTITLEMENT_PERIODS, PLAN_FIELDS, charge_definition
from tollway.store.entities.schema import EntitySchema, Errors, Nesting, common_fields

PRICE = {"type": "string", "description": "a decimal string with at most 12 decimal places, e.g. \"0.0015\"",
         "documented": {"pattern": rf"^0*[0-9]{{1,{PRICE_INTEGER_DIGITS}}}(\.[0-9]{{1,{PRICE_PLACES}}})?$"}}
COUNT = {"type": "integer", "between": (0, (1 << 63) - 1)}
SERVER_SET = "set by Tollway"


def _statuses_as_text(data: dict[str, Any]) -> Errors:
    """A status filter may list codes as integers (404): stored as text like classes ("4xx")."""
    status = data.get("status")
    if isinstance(status, list):
        data["status"] = [str(item) if isinstance(item, int) and not isinstance(item, bool) else item
                          for item in status]
    return {}


METERS = EntitySchema(
    declarative=False,
    name="meters",
    path="meters",
    table=tables.meters,
    endpoint_key="name",
    unique=("name",),
    fields={
        **common_fields(),
        "name": {"type": "string", "name": True, "required": True},
        "aggregation": {"type": "string", "one_of": AGGREGATIONS, "default": "count", "required": True,
                        "description": "count: calls; sum: the bytes of `field`"},
        "field": {"type": "string", "one_of": SUM_FIELDS, "description": "what a sum adds up"},
        "service": {"type": "foreign", "reference": "services", "description": "filter: only calls to this service"},
        "route": {"type": "foreign", "reference": "routes", "description": "filter: only calls on this route"},
        "status": {"type": "array", "elements": {"type": "string"}, "documented": {"items": {"anyOf": [
                       {"type": "string", "pattern": "^([1-5][0-9][0-9]|[1-5]xx)$"},
                       {"type": "integer", "minimum": 100, "maximum": 599}]}},
                   "description": "filter: status codes (\"404\") or classes (\"2xx\"); null counts every status"},
    },
    prepare=_statuses_as_text,
    checks=(meter_problems,),
    documented_checks=({"anyOf": [  # field goes with sum only
        {"properties": {"aggregation": {"enum": ["count"]}, "field": {"nullable": True, "enum": [None]}}},
        {"properties": {"aggregation": {"enum": ["sum"]}, "field": {"not": {"nullable": True, "enum": [None]}}},
         "required": ["aggregation", "field"]}]},),
    restrict=(("charges", "meter_id"), ("entitlements", "meter_id")),
    in_snapshot=False,
)


def _plan_problems(entity: Mapping[str, Any]) -> Errors:
    return validate_plan({name: entity[name] for name in PLAN_FIELDS if entity.get(name) is not None})


def _plan_value_problems(data: dict[str, Any]) -> Errors:
    """Before validation, so that a bad currency or price is named with the type errors, all at once:
    the values given as strings (the others are the types' problems)."""
    given = {name: data[name] for name in ("currency", "base_fee", "minimum_commitment")
             if isinstance(data.get(name), str) and data[name] != ""}  # "" is a form's null, or a type error
    problems = validate_plan({"currency": "USD", **given})
    return {name: problem for name, problem in problems.items() if name in given}


PLANS = EntitySchema(
    declarative=False,
    name="plans",
    path="plans",
    table=tables.plans,
    endpoint_key="name",
    unique=("name",),
    fields={
        **common_fields(),
        "name": {"type": "string", "name": True, "required": True, "description": "the plan's unique code"},
        "currency": {"type": "string", "required": True, "description": "ISO 4217 code, e.g. USD",
                     "documented": {"enum": sorted(code for code, unit in ISO_4217.items() if unit is not None)}},
        "interval": {"type": "string", "one_of": INTERVALS, "default": "month", "required": True},
        "billing_anchor": {"type": "string", "one_of": ANCHORS, "default": "calendar", "required": True},
        "base_fee": {**PRICE, "default": "0", "required": True, "description": "charged in advance each period"},
        "trial_days": {"type": "integer", "between": (0, 36500), "default": 0, "required": True},
        "minimum_commitment": PRICE,
    },
    prepare=_plan_value_problems,
    checks=(_plan_problems,),
    restrict=(("subscriptions", "plan_id"), ("subscriptions", "next_plan_id"), ("plan_versions", "plan_id")),
    in_snapshot=False,
)


def _charge_problems(entity: Mapping[str, Any]) -> Errors:
    return validate_charge(charge_definition(entity))


def _charge_key(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The column that makes (plan, meter) unique."""
    return {"cache_key": ":".join(["charges", entity["plan"]["id"], entity["meter"]["id"]])}


def _charge_unique(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {"plan": entity.get("plan"), "meter": entity.get("meter")}


def _entitlement_key(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The column that makes (plan, meter, period) unique."""
    return {"cache_key": ":".join(["entitlements", entity["plan"]["id"], entity["meter"]["id"], entity["period"]])}


def _entitlement_unique(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {"plan": entity.get("plan"), "meter": entity.get("meter"), "period": entity.get("period")}


PLAN_REF = {"type": "foreign", "reference": "plans", "required": True}
METER_REF = {"type": "foreign", "reference": "meters", "required": True}

CHARGES = EntitySchema(
    declarative=False,
    name="charges",
    path="charges",
    table=tables.charges,
    nested=(Nesting("plan", "charges"),),
    fields={
        **common_fields(),
        "plan": PLAN_REF,
        "meter": METER_REF,
        "model": {"type": "string", "one_of": MODELS, "required": True},
        "unit_price": {**PRICE, "description": "standard: the price of one unit"},
        "free_units": {**COUNT, "description": "standard, package: units not charged"},
        "tiers": {"type": "array", "description": "graduated, volume: up_to inclusive, null on the last tier",
                  "documented": {"minItems": 1},
                  "elements": {"type": "record", "fields": {
                      "up_to": {"type": "integer", "between": (1, (1 << 63) - 1)},
                      "unit_price": {**PRICE, "required": True},
                      "flat_fee": {**PRICE, "default": "0", "required": True}}}},
        "package_size": {"type": "integer", "between": (1, (1 << 63) - 1), "description": "package: units per package"},
        "package_price": {**PRICE, "description": "package: the price of one package"},
    },
    checks=(_charge_problems,),
    documented_checks=(model_rules(),),
    computed=_charge_key,
    computed_unique=_charge_unique,
    in_snapshot=False,
)

ENTITLEMENTS = EntitySchema(
    declarative=False,
    name="entitlements",
    path="entitlements",
    table=tables.entitlements,
    nested=(Nesting("plan", "entitlements"),),
    fields={
        **common_fields(),
        "plan": PLAN_REF,
        "meter": METER_REF,
        "limit": {**COUNT, "required": True, "description": "units of the meter per period"},
        "period": {"type": "string", "one_of": ENTITLEMENT_PERIODS, "required": True},
        "enforcement": {"type": "string", "one_of": ENFORCEMENTS, "default": "hard", "required": True,
                        "description": "hard: the proxy answers 429 beyond the limit; soft: served and priced"},
    },
    computed=_entitlement_key,
    computed_unique=_entitlement_unique,
    in_snapshot=False,
)


@functools.cache
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone_problems(entity: Mapping[str, Any]) -> Errors:
    """Before validation (so it is named with the other problems): a tz given must be an IANA name."""
    tz = entity.get("tz")
    if isinstance(tz, str) and tz not in time_zones():
        return {"tz": f"unknown time zone '{tz}': expected an IANA name such as Europe/Berlin"}
    return {}


def subscription_for_workers(entity: dict[str, Any]) -> dict[str, Any]:
    """What a worker needs to enforce hard entitlements: who, when, where, and each phase's hard ones."""
    phases = [{**phase, "entitlements": [item for item in phase.get("entitlements", [])
                                         if item.get("enforcement") == "hard"]}
              for phase in entity.get("phases") or []]
    return {"id": entity["id"], "consumer": entity["consumer"], "started_at": entity["started_at"],
            "ends_at": entity.get("ends_at"), "tz": entity["tz"], "phases": phases}


SUBSCRIPTIONS = EntitySchema(
    declarative=False,
    name="subscriptions",
    path="subscriptions",
    table=tables.subscriptions,
    nested=(Nesting("consumer", "subscriptions"),),
    fields={
        **common_fields(),
        "consumer": {"type": "foreign", "reference": "consumers", "required": True},
        "plan": {"type": "foreign", "reference": "plans", "required": True,
                 "description": "the plan; a PATCH changing it switches now"},
        "plan_version": {"type": "integer", "auto": True, "description": SERVER_SET + ": the version subscribed"},
        "started_at": {"type": "integer", "between": (0, (1 << 53)), "description": "epoch seconds; default now"},
        "ends_at": {"type": "integer", "auto": True, "description": SERVER_SET + " by POST .../cancel"},
        "tz": {"type": "string", "default": "UTC", "required": True, "description": "IANA time zone of its periods",
               "documented": {"enum": sorted(time_zones())}},
        "external_customer_id": {"type": "string"},
        "next_plan": {"type": "foreign", "reference": "plans",
                      "description": "a plan to switch to at the end of the current billing period; null: none"},
        "next_plan_version": {"type": "integer", "auto": True, "description": SERVER_SET},
        "next_plan_at": {"type": "integer", "auto": True, "description": SERVER_SET + ": when next_plan applies"},
        "phases": {"type": "array", "auto": True, "elements": {"type": "map"},
                   "description": SERVER_SET + ": the plan versions over time, with their entitlements"},
    },
    prepare=_zone_problems,
    # a change of plan is scheduled once the subscription exists (PATCH)
    documented_checks=({"properties": {"next_plan": {"nullable": True, "enum": [None]}}},),
    for_workers=subscription_for_workers,
)

ENTITIES = [METERS, PLANS, CHARGES, ENTITLEMENTS, SUBSCRIPTIONS]
