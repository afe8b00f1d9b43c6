"""`tollway plans apply`: bring meters and plans to what a plans file (plans_file.py) declares.

Every entity is validated as the Admin API validates it (its Crud.build) before anything is
written, and every problem is reported at once (PlansFileError); the writes then run in one
transaction, so a file is applied entirely or not at all. An entity equal to what is declared is
not written (prices compare as numbers: "29" is "29.00"), so applying a file twice changes nothing
the second time. `changes(...)` is the dry run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tollway.billing import plan_store
from tollway.billing.plans_file import PlansFileError, label
from tollway.errors import SchemaViolation
from tollway.store.entities.catalog import Catalog

PRICES = ("base_fee", "minimum_commitment", "unit_price", "package_price", "flat_fee")
AUTO = ("id", "created_at", "updated_at")


@dataclass(frozen=True)
class Change:
    action: str                   # create, update or delete
    what: str                     # "plan pro, charge api-calls"
    fields: tuple[str, ...] = ()  # an update's fields, "base_fee: 29 -> 39"

    def __str__(self) -> str:
        details = f" ({'; '.join(self.fields)})" if self.fields else ""
        return f"{self.what}: {self.action}{details}"


@dataclass
class _Plan:
    """What applying a file takes: the changes, and the writes that make them."""

    changes: list[Change] = field(default_factory=list)
    writes: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)  # (order, entity, action, row)
    problems: list[str] = field(default_factory=list)

    def add(self, order: int, entity: str, action: str, row: dict[str, Any], change: Change) -> None:
        self.writes.append((order, entity, action, row))
        self.changes.append(change)


def _same(a: Any, b: Any) -> bool:
    """Equal, prices compared as numbers."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) if k in PRICES else a[k] == b[k] for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        try:
            return a == b or Decimal(a) == Decimal(b)
        except InvalidOperation:
            return False
    return bool(a == b)


def _prices_as_text(data: dict[str, Any]) -> dict[str, Any]:
    """YAML integers where prices are expected are prices too (base_fee: 29)."""
    out = dict(data)
    for name in PRICES:
        if isinstance(out.get(name), int) and not isinstance(out[name], bool):
            out[name] = str(out[name])
    if isinstance(out.get("tiers"), list):
        out["tiers"] = [_prices_as_text(dict(tier)) if isinstance(tier, Mapping) else tier for tier in out["tiers"]]
    return out


def problem_lines(where: str, fields: Mapping[str, Any]) -> list[str]:
    """Kong's nested `fields` as one line per problem: "plans[0] (pro): tiers.2.up_to: ..."."""
    found: list[str] = []

    def walk(path: str, problem: Any) -> None:
        at = ": ".join(part for part in (where, path) if part)
        if isinstance(problem, Mapping):
            for key, sub in problem.items():
                walk(path if key == "@entity" else f"{path}.{key}".lstrip("."), sub)
        elif isinstance(problem, list) and all(isinstance(item, str) for item in problem):
            found.extend(f"{at}: {item}" if at else item for item in problem)
        elif isinstance(problem, list):
            for index, sub in enumerate(problem, 1):
                if sub is not None:
                    walk(f"{path}.{index}", sub)
        else:
            found.append(f"{at}: {problem}" if at else str(problem))

    walk("", fields)
    return found


class _Planner:
    def __init__(self, catalog: Catalog, existing: dict[str, list[dict[str, Any]]]) -> None:
        self.catalog = catalog
        self.existing = existing
        self.result = _Plan()
        self.meter_ids: dict[str, str] = {m["name"]: m["id"] for m in existing["meters"]}

    def entity(self, order: int, name: str, what: str, where: str, data: dict[str, Any],
               old: dict[str, Any] | None) -> dict[str, Any] | None:
        """Validate `data` as entity `name` (replacing `old`); record the write it needs, if any."""
        crud = self.catalog.crud(name)
        if old is not None:
            data = {**data, "id": old["id"]}
            data.setdefault("tags", old.get("tags"))
        try:
            built = crud.build(data, form=False, old=None if old is None else {"id": old["id"],
                                                                              "created_at": old["created_at"]})
        except SchemaViolation as exc:
            self.result.problems += problem_lines(where, exc.fields)
            return None
        if old is None:
            self.result.add(order, name, "insert", built, Change("create", what))
            return built
        differ = [key for key in built if key not in AUTO and not _same(built[key], old.get(key))]
        if differ:
            shown = tuple(f"{key}: {_show(old.get(key))} -> {_show(built[key])}" for key in differ)
            self.result.add(order, name, "update", built, Change("update", what, shown))
        return built

    def ref(self, kind: str, value: Any, where: str) -> dict[str, str] | None:
        if value is None:
            return None
        found = next((item for item in self.existing[kind] if value in (item["id"], item.get("name"))), None)
        if found is None:
            self.result.problems.append(f"{where}: no {kind[:-1]} with id or name '{value}'")
            return None
        return {"id": found["id"]}

    def meter(self, index: int, item: Mapping[str, Any]) -> None:
        where = label("meters", index, item)
        filters = item.get("filter") or {}
        data = {key: item[key] for key in ("name", "aggregation", "field", "tags") if key in item}
        data["status"] = filters.get("status")
        data["service"] = self.ref("services", filters.get("service"), f"{where}: filter.service")
        data["route"] = self.ref("routes", filters.get("route"), f"{where}: filter.route")
        old = next((m for m in self.existing["meters"] if m["name"] == item["name"]), None)
        built = self.entity(0, "meters", f"meter {item['name']}", where, data, old)
        if built is not None:
            self.meter_ids[built["name"]] = built["id"]

    def plan(self, index: int, item: Mapping[str, Any]) -> None:
        where = label("plans", index, item)
        data = _prices_as_text({key: value for key, value in item.items() if key not in ("charges", "entitlements")})
        old = next((p for p in self.existing["plans"] if p["name"] == item["name"]), None)
        built = self.entity(1, "plans", f"plan {item['name']}", where, data, old)
        plan_id = built["id"] if built is not None else old["id"] if old is not None else None
        for part, key_of in (("charges", lambda e: (e["meter"]["id"],)),
                             ("entitlements", lambda e: (e["meter"]["id"], e.get("period")))):
            mine = [e for e in self.existing[part] if old is not None and e["plan"]["id"] == old["id"]]
            kept: set[Any] = set()
            for position, child in enumerate(item.get(part) or []):
                self.child(part, f"{where}: {part}[{position}]", item["name"], plan_id, child, mine, key_of, kept)
            for gone in mine:
                if key_of(gone) not in kept:
                    change = Change("delete", self.child_name(item["name"], part, gone))
                    self.result.add(2, part, "delete", gone, change)

    def child(self, part: str, where: str, plan_name: str, plan_id: str | None, child: Any, mine: list[dict[str, Any]],
              key_of: Any, kept: set[Any]) -> None:
        if not isinstance(child, Mapping):
            self.result.problems.append(f"{where}: expected a map")
            return
        meter_id = self.meter_ids.get(str(child.get("meter"))) or next(
            (m["id"] for m in self.existing["meters"] if m["id"] == child.get("meter")), None)
        if meter_id is None:
            self.result.problems.append(f"{where}: meter: no meter named '{child.get('meter')}'")
            return
        if plan_id is None:
            return  # the plan itself is invalid: reported already
        data = {**_prices_as_text(dict(child)), "plan": {"id": plan_id}, "meter": {"id": meter_id}}
        old = next((e for e in mine if key_of(e) == key_of(data)), None)
        kept.add(key_of(data))
        self.entity(3, part, self.child_name(plan_name, part, data, child.get("meter")), where, data, old)

    def child_name(self, plan_name: str, part: str, entity: Mapping[str, Any], meter: str | None = None) -> str:
        name = meter or next((m for m, i in self.meter_ids.items() if i == entity["meter"]["id"]), "?")
        period = f" per {entity.get('period')}" if part == "entitlements" else ""
        return f"plan {plan_name}, {part[:-1]} {name}{period}"


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


async def _existing(catalog: Catalog) -> dict[str, list[dict[str, Any]]]:
    async with catalog.db.connect() as conn:
        return {name: await catalog.daos[name].all(conn)
                for name in ("services", "routes", "meters", "plans", "charges", "entitlements")}


async def changes(catalog: Catalog, document: Mapping[str, Any]) -> _Plan:
    """What applying `document` would change; PlansFileError listing every problem."""
    planner = _Planner(catalog, await _existing(catalog))
    for index, item in enumerate(document.get("meters") or []):
        planner.meter(index, item)
    for index, item in enumerate(document.get("plans") or []):
        planner.plan(index, item)
    if planner.result.problems:
        raise PlansFileError(planner.result.problems)
    return planner.result


async def apply(catalog: Catalog, document: Mapping[str, Any], *, dry_run: bool = False) -> tuple[list[Change],
                                                                                                   list[str]]:
    """Apply `document` (unless dry_run); the changes, and notes on plans whose subscriptions keep an
    older version than the head now declared."""
    planned = await changes(catalog, document)
    if not dry_run and planned.writes:
        async with catalog.write() as conn:
            for _order, name, action, row in sorted(planned.writes, key=lambda write: write[0]):
                dao = catalog.daos[name]
                if action == "delete":
                    await dao.delete(conn, row["id"])
                    continue
                await dao.check_foreign(conn, row)
                await dao.check_unique(conn, row)
                await (dao.insert(conn, row) if action == "insert" else dao.update(conn, row))
    return planned.changes, [] if dry_run else await _version_notes(catalog, document)


async def _version_notes(catalog: Catalog, document: Mapping[str, Any]) -> list[str]:
    notes = []
    async with catalog.db.connect() as conn:
        for item in document.get("plans") or []:
            plan = await plan_store.find_plan(conn, item["name"])
            latest = None if plan is None else await plan_store.latest_version(conn, plan["id"])
            if plan is not None and latest is not None and \
                    latest.version.canonical() != (await plan_store.read_head(conn, plan)).canonical():
                notes.append(f"plan {plan['name']}: subscriptions keep version {latest.number} (or older); a PATCH "
                             "of a subscription with its plan moves it to the plan as now declared")
    return notes
