"""What POST /pricing/simulate and `tollway pricing simulate` share: checking a request, pricing it.

    {"plan": "pro", "version": 2, "usage": {"api-calls": 12345, "egress": "1.5"}}

`plan` is a plan's name or id; `version` (optional) one of its recorded versions, else its head
as it stands; `usage` maps each meter to units, an integer or a decimal string (a form sends
strings). Every problem is reported at once (SchemaViolation, Kong's `fields` shape).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.billing import plan_store
from tollway.billing.errors import AmountOutOfRange, InvalidQuantity
from tollway.billing.money import quantity
from tollway.billing.quote import quote
from tollway.billing.versions import PlanVersion
from tollway.errors import ForeignKeysUnresolved, SchemaViolation

FIELDS = ("plan", "version", "usage")
UNITS = "expected a non-negative integer, or a decimal string"
_UNITS_TEXT = re.compile(r"[0-9]{1,30}(\.[0-9]{1,12})?")


@dataclass(frozen=True)
class Simulation:
    plan: str
    version: int | None
    usage: dict[str, Decimal]


def units_of(value: object) -> Decimal:
    """Units as given: an int, or a decimal string ("12", "1.5"); ValueError(UNITS) otherwise."""
    if isinstance(value, str):
        if not _UNITS_TEXT.fullmatch(value.strip()):
            raise ValueError(UNITS)
        value = Decimal(value.strip())
    try:
        return quantity(value)
    except InvalidQuantity:
        raise ValueError(UNITS) from None


def parse(data: object) -> Simulation:
    """A checked request; SchemaViolation listing every problem."""
    if not isinstance(data, Mapping):
        raise SchemaViolation({"@entity": ["expected a record"]})
    errors: dict[str, Any] = {key: "unknown field" for key in data if key not in FIELDS}
    plan = data.get("plan")
    if isinstance(plan, Mapping) and len(plan) == 1 and isinstance(plan.get("id", plan.get("name")), str):
        plan = plan.get("id", plan.get("name"))
    if plan is None:
        errors["plan"] = "required field missing"
    elif not isinstance(plan, str) or not plan:
        errors["plan"] = "expected a plan's name or id"
    version = data.get("version")
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or not
                                1 <= version <= 2**31 - 1):
        errors["version"] = "expected a version number (an integer from 1)"
    usage: dict[str, Decimal] = {}
    given = data.get("usage") or {}
    if not isinstance(given, Mapping):
        errors["usage"] = "expected a map of meter names to units"
    else:
        problems = {}
        for meter, value in given.items():
            try:
                usage[str(meter)] = units_of(value)
            except ValueError as exc:
                problems[str(meter)] = str(exc)
        if problems:
            errors["usage"] = problems
    if errors:
        raise SchemaViolation(errors)
    assert isinstance(plan, str)
    return Simulation(plan, version, usage)


async def simulate(conn: AsyncConnection, request: Simulation) -> dict[str, Any]:
    """The quote of one whole period: {"plan", "plan_version", "currency", "lines", "total", "total_minor"}."""
    plan = await plan_store.find_plan(conn, request.plan)
    if plan is None:
        # a reference by name that names nothing: Kong's 400 "foreign keys unresolved", as a body's service.name=
        raise ForeignKeysUnresolved("plan", "name", request.plan, "plans")
    version: PlanVersion
    if request.version is None:
        version = await plan_store.read_head(conn, plan)
    else:
        stored = await plan_store.read_version(conn, plan["id"], request.version)
        if stored is None:
            raise SchemaViolation({"version": f"plan '{plan['name']}' has no version {request.version}"})
        version = stored.version
    unknown = {meter: f"the plan has no charge for meter '{meter}'" for meter in request.usage
               if meter not in version.plan.charges}
    if unknown:
        raise SchemaViolation({"usage": unknown})
    try:
        priced = quote(version.plan, request.usage)
    except AmountOutOfRange as exc:
        raise SchemaViolation({"usage": str(exc)}) from None
    return {"plan": {"id": plan["id"], "name": plan["name"]}, "plan_version": request.version, **priced.to_json()}
