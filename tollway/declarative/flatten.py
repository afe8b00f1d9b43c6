"""From a declarative document to flat, validated entities, parents before children.

Each entity is checked by its entity's own CRUD (`Crud.build`: the Admin API's schemas,
shorthands and defaults), so a file is valid exactly when the same entities would be accepted one
by one. Steps:

1. walk: every array is taken apart; an entity nested in its parent (`services[].routes[]`)
   gets the parent as its foreign key, and may not name one itself;
2. resolve, entity by entity with parents first: references by id or name (`service: my-service`)
   to entities of the same file, then an id for each entity that has none, then validation.

Ids are stable, so that importing a file again updates what it created: an entity matched in the
database (by name, username, custom_id, group or key, or for a plugin its name and scopes) keeps
its id; else the id is derived from that natural key (an entity without one, an unnamed route,
from its content). A credential whose key is a secret gets a random id: an id derived from a key
would let anyone who sees the id test guesses of the key.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.declarative.fileformat import (
    CURRENT_FORMAT,
    IGNORED_KEYS,
    KONG_ONLY,
    check_metadata,
    ignored_key_problems,
    upgrade_route_paths,
)
from tollway.declarative.problems import DeclarativeError, Entry, Problems
from tollway.errors import SchemaViolation
from tollway.store.entities.catalog import Catalog
from tollway.store.entities.schema import EntitySchema

NAMESPACE = uuid.UUID("6f0e7d5c-2b1a-4c1e-9a57-3d0b7a9e5f21")  # Tollway's, for ids derived from names
STAND_IN_ID = "00000000-0000-0000-0000-000000000000"  # the parent of a child whose parent is invalid
TIMES = ("created_at", "updated_at")

# Finds the id an entity already has in the database (db_import), from the built entity.
Lookup = Callable[[str, dict[str, Any]], Awaitable[str | None]]


@dataclass
class Item:
    """One entity of the file."""

    entity: str
    data: dict[str, Any]                       # its fields as given (children and ignored keys taken out)
    problems: Entry
    parent: tuple[str, Item] | None = None     # (foreign field, parent) when nested
    built: dict[str, Any] | None = None        # the validated entity, once resolved
    times: dict[str, int] = field(default_factory=dict)  # created_at / updated_at as given


def dependency_order(schemas: dict[str, EntitySchema]) -> list[str]:
    """Entity names with every entity after those it references (services before routes)."""
    ordered: list[str] = []

    def visit(name: str, seen: tuple[str, ...]) -> None:
        if name in ordered or name in seen:
            return
        for reference in schemas[name].foreign_fields().values():
            if reference in schemas:
                visit(reference, (*seen, name))
        ordered.append(name)

    for name in schemas:
        visit(name, ())
    return ordered


class Flattener:
    """Flattens and checks documents for one catalog (the entities of the enabled plugins)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.schemas = {name: schema for name, schema in catalog.entities.items() if schema.declarative}
        self.order = dependency_order(self.schemas)
        # parent entity -> {child entity: the child's foreign field naming the parent}
        self.children: dict[str, dict[str, str]] = {}
        for schema in self.schemas.values():
            for nesting in schema.nested:
                parent = schema.fields[nesting.field]["reference"]
                self.children.setdefault(parent, {})[schema.name] = nesting.field

    # 1. walk

    def walk(self, document: dict[str, Any]) -> tuple[dict[str, list[Item]], Problems]:
        """Every entity of the document, by entity name, and the problems found so far."""
        problems = Problems()
        version = check_metadata(document, problems.root)
        upgrade = version is not None and version != CURRENT_FORMAT
        items: dict[str, list[Item]] = {name: [] for name in self.schemas}
        for key, value in document.items():
            if key.startswith("_"):
                continue
            if key in self.schemas:
                self._walk(key, value, problems.root, None, upgrade, items)
            elif key in KONG_ONLY:
                if value:  # an empty array of them is harmless
                    problems.root.fields[key] = f"Tollway has no '{key}' (a Kong entity it does not support)"
            else:
                problems.root.fields[key] = "unknown field"
        return items, problems

    def _walk(self, name: str, value: Any, holder: Entry, parent: tuple[str, Item] | None, upgrade: bool,
              items: dict[str, list[Item]]) -> None:
        if not isinstance(value, list):
            holder.fields[name] = "expected an array"
            return
        schema = self.schemas[name]
        for position, raw in enumerate(value, 1):
            problems = holder.child(name, _label(schema, position, raw))
            if not isinstance(raw, dict):
                problems.fields["@entity"] = ["expected a record"]
                continue
            problems.fields.update(ignored_key_problems(raw))
            data = {key: value for key, value in raw.items() if key not in IGNORED_KEYS}
            nested = {child: data.pop(child) for child in self.children.get(name, {}) if child in data}
            if parent is not None:
                if data.get(parent[0]) is not None:
                    problems.fields[parent[0]] = "value must be null"  # it is the parent's, by nesting
                data.pop(parent[0], None)
            if name == "routes" and upgrade:
                upgrade_route_paths(data)
            item = Item(name, data, problems, parent)
            items[name].append(item)
            for child, child_value in nested.items():
                self._walk(child, child_value, problems, (self.children[name][child], item), upgrade, items)

    # 2. resolve

    async def resolve(self, items: dict[str, list[Item]], problems: Problems, lookup: Lookup | None = None) -> None:
        """References, ids and validation, parents first; raises DeclarativeError listing every
        problem of the file."""
        index: dict[str, dict[str, Item]] = {}   # entity -> id or name -> item
        for name in self.order:
            schema = self.schemas[name]
            seen: dict[str, Item] = {}
            index[name] = {}
            content_ids: dict[str, int] = {}
            for item in items.get(name, ()):
                data = dict(item.data)
                self._references(item, data, index)
                item.times = {key: data[key] for key in TIMES if isinstance(data.get(key), int)}
                try:
                    built = self.catalog.cruds[name].build(data, form=False)
                except SchemaViolation as exc:
                    _merge_problems(item.problems, exc.fields)
                    continue
                if not data.get("id"):
                    built["id"] = await self._id(schema, built, lookup, content_ids)
                if self._duplicate(schema, built, seen, item):
                    continue
                item.built = built
                index[name][built["id"]] = item
                key = schema.endpoint_key
                if key and schema.endpoint_key_scope is None and key not in schema.secrets and built.get(key):
                    index[name].setdefault(str(built[key]), item)
        if problems:
            raise DeclarativeError("Failed parsing:", problems.render())

    def _references(self, item: Item, data: dict[str, Any], index: dict[str, dict[str, Item]]) -> None:
        """Foreign fields as `{"id": ...}`: the parent of a nested item, or an entity of the file
        named by its id or endpoint key (a string, or a record of either)."""
        schema = self.schemas[item.entity]
        for name, reference in schema.foreign_fields().items():
            if item.parent is not None and item.parent[0] == name:
                parent = item.parent[1]
                data[name] = {"id": parent.built["id"] if parent.built else STAND_IN_ID}
                continue
            value = data.get(name)
            if value is None:
                continue
            wanted = value
            if isinstance(value, dict) and len(value) == 1:
                wanted = next(iter(value.values()))
            target = index.get(reference, {}).get(wanted) if isinstance(wanted, str) else None
            if target is None or target.built is None:
                shown = value if isinstance(value, str) else orjson.dumps(value).decode()
                item.problems.fields.setdefault("@entity", []).append(
                    f"invalid reference '{name}: {shown}' (no such entry in '{reference}')")
                data[name] = {"id": STAND_IN_ID}  # so that its other fields are still checked
            else:
                data[name] = {"id": target.built["id"]}

    async def _id(self, schema: EntitySchema, built: dict[str, Any], lookup: Lookup | None,
                  content_ids: dict[str, int]) -> str:
        if lookup is not None:
            found = await lookup(schema.name, built)
            if found is not None:
                return found
        natural = natural_key(schema, built)
        if natural is None:
            if schema.endpoint_key in schema.secrets and built.get(schema.endpoint_key):
                return str(uuid.uuid4())
            content = orjson.dumps({k: v for k, v in built.items() if k not in ("id", *TIMES)},
                                   option=orjson.OPT_SORT_KEYS).decode()
            seen = content_ids[content] = content_ids.get(content, 0) + 1
            natural = f"content:{content}#{seen}"  # two identical unnamed routes are two routes
        return str(uuid.uuid5(NAMESPACE, f"{schema.name}:{natural}"))

    def _duplicate(self, schema: EntitySchema, built: dict[str, Any], seen: dict[str, Item], item: Item) -> bool:
        """Whether another entity of the file has this one's id or one of its unique values."""
        keys = []
        for name in schema.unique:
            if built.get(name) is not None:
                shown = f"{name} set to '{built[name]}'" if name not in schema.secrets else f"the same {name}"
                keys.append((name, built[name], shown))
        if schema.computed_unique is not None and schema.computed is not None:
            fields = list(schema.computed_unique(built))
            keys.append(("computed", orjson.dumps(schema.computed(built)).decode(),
                         "the same " + ", ".join(fields[:-1]) + " and " + fields[-1]))
        keys.append(("primary key", built["id"], f"primary key set to '{built['id']}'"))
        for kind, value, shown in keys:
            marker = f"{kind}\x00{value}"
            if marker in seen:
                item.problems.fields.setdefault("@entity", []).append(
                    f"uniqueness violation: '{schema.name}' entity with {shown} already declared")
                return True
        for kind, value, _ in keys:
            seen[f"{kind}\x00{value}"] = item
        return False


def natural_key(schema: EntitySchema, built: dict[str, Any]) -> str | None:
    """What names an entity besides its id: its endpoint key (with its parent's id when it is
    unique only there), else a unique field, else its computed unique key (a plugin's name and
    scopes); None for an entity named by a secret, or by nothing."""
    key = schema.endpoint_key
    if key and built.get(key) is not None and key not in schema.secrets:
        scope = schema.endpoint_key_scope
        within = (built.get(scope) or {}).get("id", "") if scope else ""
        return f"{key}:{within}:{built[key]}"
    for name in schema.unique:
        if built.get(name) is not None and name not in schema.secrets:
            return f"{name}:{built[name]}"
    if schema.computed is not None and schema.computed_unique is not None:
        return orjson.dumps(schema.computed(built), option=orjson.OPT_SORT_KEYS).decode()
    return None


def _merge_problems(entry: Entry, fields: dict[str, Any]) -> None:
    for name, problem in fields.items():
        if name == "@entity":
            entry.fields.setdefault("@entity", []).extend(problem)
        else:
            entry.fields[name] = problem


def _label(schema: EntitySchema, position: int, raw: Any) -> str:
    """`entry 2 of 'services' (name: billing)`: by its endpoint key (a plugin by its name), never
    by a secret."""
    label = f"entry {position} of '{schema.name}'"
    key = schema.endpoint_key or ("name" if "name" in schema.fields else None)
    if isinstance(raw, dict) and key and key not in schema.secrets and isinstance(raw.get(key), str | int):
        label += f" ({key}: {raw[key]})"
    return label


async def flatten(catalog: Catalog, document: dict[str, Any], lookup: Lookup | None = None) -> list[Item]:
    """Every entity of a document, checked, parents first; DeclarativeError naming each problem."""
    flattener = Flattener(catalog)
    items, problems = flattener.walk(document)
    await flattener.resolve(items, problems, lookup)
    return [item for name in flattener.order for item in items[name]]
