"""Generic CRUD on one entity: build and validate, then read or write through its DAO.

`Parent` narrows an operation to the entities under one parent (/services/{s}/routes): creation
sets the foreign key, and an entity under another parent is not found.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Integer
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from tollway.store.entities.catalog import Catalog

from tollway.errors import (
    ForeignKeysUnresolved,
    NotFound,
    PrimaryKeyViolation,
    ReferencedBy,
    SchemaViolation,
)
from tollway.store.entities.dao import Dao
from tollway.store.entities.schema import REDACTED, EntitySchema
from tollway.store.entities.validation import infer_types, is_uuid, validate


@dataclass(frozen=True)
class Parent:
    field: str       # the child's foreign field, e.g. "service"
    id: str


def _merge(old: Mapping[str, Any], new: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """PATCH: new values over old ones, records (a plugin's config) merged key by key; a secret
    field sent back as shown (REDACTED) keeps its stored value."""
    merged = copy.deepcopy(dict(old))
    for key, value in new.items():
        spec = fields.get(key, {})
        if spec.get("secret") and value == REDACTED and key in merged:
            continue
        if spec.get("type") == "record" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value, spec.get("fields", {}))
        else:
            merged[key] = value
    return merged


class Crud:
    """Create, read, update, upsert, delete and list one entity."""

    def __init__(self, catalog: Catalog, schema: EntitySchema) -> None:
        self.catalog = catalog
        self.schema = schema
        self.dao: Dao = catalog.daos[schema.name]

    def build(self, data: dict[str, Any], *, form: bool, old: Mapping[str, Any] | None = None,
              merge: bool = False) -> dict[str, Any]:
        """Validate incoming data into a complete entity (ids and times set), or raise a schema violation."""
        data = dict(data)
        problems = self.schema.prepare(data) if self.schema.prepare else {}
        hint = {**(old or {}), **data} if merge else data
        fields, field_problems = self.schema.resolve_fields(hint)
        problems.update(field_problems)
        if old is not None:
            # A generated value (a key) is made when an entity is created; an update that empties
            # it is an error, never a silent new value.
            for name in self.schema.generated:
                if name in data and data[name] in (None, ""):
                    problems[name] = "length must be at least 1" if data[name] == "" else "required field missing"
        if form:
            data = infer_types(data, fields)
        if merge and old is not None:
            data = _merge(old, data, fields)
        entity, invalid = validate(fields, data)
        invalid.update(problems)
        invalid.update(self._column_limits(entity, invalid))
        if not invalid:
            for check in self.schema.checks:
                invalid.update(check(entity))
        if invalid:
            raise SchemaViolation(invalid)
        now = int(time.time())
        entity["id"] = (old or {}).get("id") or entity.get("id") or str(uuid.uuid4())
        entity["created_at"] = (old or {}).get("created_at") or entity.get("created_at") or now
        entity["updated_at"] = now
        for name, generate in self.schema.generated.items():
            if entity.get(name) is None:
                entity[name] = generate()
        if self.schema.ttl and entity.get("ttl") == 0:
            entity["ttl"] = None  # a ttl of 0 never expires
        return {name: entity.get(name) for name in fields}

    def _column_limits(self, entity: Mapping[str, Any], invalid: Mapping[str, Any]) -> dict[str, Any]:
        """Values their columns cannot hold (a 300-character name, a 40-bit integer), as Kong's
        length and range errors rather than a database error."""
        found: dict[str, Any] = {}
        columns = self.schema.table.c
        for name, value in entity.items():
            if name in invalid or name not in columns or value is None:
                continue
            column_type = columns[name].type
            length = getattr(column_type, "length", None)
            if isinstance(value, str) and length is not None and len(value) > length:
                found[name] = f"length must be at most {length}"
            elif isinstance(value, int) and not isinstance(value, bool) and isinstance(column_type, Integer) \
                    and not isinstance(column_type, BigInteger) and not -(1 << 31) <= value < (1 << 31):
                found[name] = f"value should be between {-(1 << 31)} and {(1 << 31) - 1}"
        return found

    # Reads

    async def find(self, ident: str, parent: Parent | None = None) -> dict[str, Any] | None:
        """The entity by id or endpoint key (under `parent` when given), or None."""
        where = {parent.field + "_id": parent.id} if parent else None
        async with self.catalog.db.connect() as conn:
            return await self.dao.get(conn, ident, where)

    async def find_by(self, field: str, value: Any) -> dict[str, Any] | None:
        """The entity whose unique `field` holds `value`, or None."""
        async with self.catalog.db.connect() as conn:
            return await self.dao.find_by(conn, field, value)

    async def read(self, ident: str, parent: Parent | None = None) -> dict[str, Any]:
        entity = await self.find(ident, parent)
        if entity is None:
            raise NotFound(self.schema.name)
        return entity

    async def page(self, *, size: int, after: str | None, tags: list[str] | None, any_tag: bool,
                   parent: Parent | None = None) -> tuple[list[dict[str, Any]], str | None]:
        where = {parent.field + "_id": parent.id} if parent else None
        async with self.catalog.db.connect() as conn:
            return await self.dao.page(conn, size=size, after=after, where=where, tags=tags, any_tag=any_tag)

    # Writes

    async def resolve_references(self, data: dict[str, Any]) -> None:
        """Kong's references by endpoint key: `{"service": {"name": "s"}}` (or the form key
        `service.name=s`) becomes `{"service": {"id": ...}}`; a name that finds nothing is
        Kong's 400 "foreign keys unresolved"."""
        for name, reference in self.schema.foreign_fields().items():
            value = data.get(name)
            target = self.catalog.entities.get(reference)
            key = target.endpoint_key if target is not None else None
            if not isinstance(value, Mapping) or "id" in value or key is None or set(value) != {key}:
                continue
            wanted = value[key]
            if not isinstance(wanted, str) or not wanted:
                continue  # left to validation, which names the problem
            async with self.catalog.db.connect() as conn:
                found = await self.catalog.daos[reference].get(conn, wanted)
            if found is None or found.get(key) != wanted:
                raise ForeignKeysUnresolved(name, key, wanted, reference)
            data[name] = {"id": found["id"]}

    async def create(self, data: dict[str, Any], *, form: bool, parent: Parent | None = None) -> dict[str, Any]:
        if parent:
            data[parent.field] = {"id": parent.id}
        await self.resolve_references(data)
        entity = self.build(data, form=form)
        async with self.catalog.write() as conn:
            if await self.dao.exists(conn, entity["id"]):
                raise PrimaryKeyViolation(entity["id"])
            await self._checked_write(conn, entity, new=True)
        return entity

    async def update(self, ident: str, data: dict[str, Any], *, form: bool,
                     parent: Parent | None = None) -> dict[str, Any]:
        old = await self.read(ident, parent)
        await self.resolve_references(data)
        kept_ttl = self.schema.ttl and "ttl" not in data  # a PATCH without a ttl keeps the expiry
        entity = self.build(data, form=form, old=old, merge=True)
        async with self.catalog.write() as conn:
            await self._checked_write(conn, entity, new=False, keep=("ttl",) if kept_ttl else ())
        return entity

    async def upsert(self, ident: str, data: dict[str, Any], *, form: bool,
                     parent: Parent | None = None) -> dict[str, Any]:
        """PUT: replace the entity named by ident (id or endpoint key), or create it."""
        if parent is None and self.schema.endpoint_key_scope and not is_uuid(ident):
            raise NotFound(self.schema.name)  # such a key names something only under a parent
        if self.schema.endpoint_key is None and not is_uuid(ident):
            # only an id names it (Kong: its primary key is invalid), never a new entity under another id
            raise SchemaViolation({"id": "expected a valid UUID"})
        old = await self.find(ident, parent)
        if parent and old is None and is_uuid(ident) and await self.find(ident) is not None:
            raise NotFound(self.schema.name)  # that id is another parent's entity: not found here
        if parent:
            data[parent.field] = {"id": parent.id}
        if is_uuid(ident) and old is None:
            data["id"] = ident
        elif self.schema.endpoint_key and not is_uuid(ident):
            data[self.schema.endpoint_key] = ident
        await self.resolve_references(data)
        entity = self.build(data, form=form, old=old and {"id": old["id"], "created_at": old["created_at"]})
        async with self.catalog.write() as conn:
            await self._checked_write(conn, entity, new=old is None)
        return entity

    async def delete(self, ident: str, parent: Parent | None = None) -> bool:
        """Delete; whether there was one. An absent entity is no error here: Kong answers 204 at
        the top level and 404 under a parent, which the caller decides."""
        old = await self.find(ident, parent)
        if old is None:
            return False
        async with self.catalog.write() as conn:
            child = await self.dao.referencing(conn, old["id"])
            if child is not None:
                raise ReferencedBy(self.schema.name, child)
            await self.dao.delete(conn, old["id"])
        return True

    async def put(self, conn: AsyncConnection, entity: dict[str, Any], times: Mapping[str, int]) -> bool:
        """Write a built entity (see `build`) by its id on the caller's transaction: insert it, or
        replace the row with that id; for declarative imports. `times` holds the created_at and
        updated_at the caller was given: a new row keeps them, an existing one keeps its own
        created_at unless given and is updated now. False when the row already held this entity,
        which is then left untouched."""
        old = await self.dao.get(conn, entity["id"])
        entity["created_at"] = times.get("created_at") or (old or {}).get("created_at") or entity["created_at"]
        if old is None:
            entity["updated_at"] = times.get("updated_at") or entity["updated_at"]
        elif self._same_row(old, entity):
            return False
        await self._checked_write(conn, entity, new=old is None)
        return True

    def _same_row(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Whether writing `new` over `old` would store the same values: keys compared as stored,
        update times aside, ttls equal to the second (they count down between reads)."""
        old_row, new_row = self.dao.to_row(old), self.dao.to_row(new)
        if any(old_row[k] != new_row[k] for k in old_row if k not in ("updated_at", "ttl")):
            return False
        old_ttl, new_ttl = old.get("ttl"), new.get("ttl")
        if old_ttl is None or new_ttl is None:
            return old_ttl is new_ttl
        return bool(abs(old_ttl - new_ttl) <= 1)

    async def _checked_write(self, conn: AsyncConnection, entity: dict[str, Any], *, new: bool,
                             keep: tuple[str, ...] = ()) -> None:
        if self.schema.ttl:
            await self.dao.purge_expired(conn)  # an expired entity must not hold its id or key
        await self.dao.check_foreign(conn, entity)
        await self.dao.check_unique(conn, entity)
        if new:
            await self.dao.insert(conn, entity)
        else:
            await self.dao.update(conn, entity, keep)
