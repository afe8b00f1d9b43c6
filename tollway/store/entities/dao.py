"""Rows of one entity's table: conversion to and from entities, and the queries CRUD needs.

Every method takes the connection it runs on, so that checks and writes share a transaction.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import Table, and_, delete, exc, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from tollway.errors import ForeignKeyViolation, PrimaryKeyViolation, ReferencedBy, SchemaViolation, UniqueViolation
from tollway.store.entities.schema import JSON_TYPES, EntitySchema, column_of
from tollway.store.entities.validation import is_uuid
from tollway.store.integrity import classify


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Dao:
    """Data access for one entity schema."""

    def __init__(self, schema: EntitySchema) -> None:
        self.schema = schema
        self.table: Table = schema.table
        self._columns = [(name, spec, column_of(name, spec)) for name, spec in schema.fields.items()]

    # Conversion

    def to_entity(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        """A row as the Admin API shows it: JSON columns decoded, foreign keys as {"id": ...},
        and for an entity with a ttl the whole seconds it has left."""
        entity: dict[str, Any] = {}
        for name, spec, column in self._columns:
            value = row[column]
            if value is not None:
                if name == "ttl" and self.schema.ttl:
                    value = max(0, value - int(time.time()))
                elif spec["type"] == "foreign":
                    value = {"id": value}
                elif spec["type"] in JSON_TYPES:
                    value = orjson.loads(value)
            entity[name] = value
        return entity

    def to_row(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, spec, column in self._columns:
            value = entity.get(name)
            if value is not None:
                if name == "ttl" and self.schema.ttl:
                    value = int(time.time()) + value if value > 0 else None  # when it expires; 0: never
                elif spec["type"] == "foreign":
                    value = value["id"]
                elif spec["type"] in JSON_TYPES:
                    value = orjson.dumps(value).decode()
                elif name in self.schema.stored:
                    value = self.schema.stored[name](value)
            row[column] = value
        if self.schema.computed is not None:
            row.update(self.schema.computed(entity))
        return row

    # Reads

    def _live(self) -> list[ColumnElement[bool]]:
        """The condition every read adds: an entity with a ttl is gone once it expired."""
        if not self.schema.ttl:
            return []
        return [or_(self.table.c.ttl.is_(None), self.table.c.ttl >= int(time.time()))]

    def _where(self, where: Mapping[str, Any] | None) -> list[ColumnElement[bool]]:
        return [self.table.c[col] == value for col, value in (where or {}).items()] + self._live()

    async def get(self, conn: AsyncConnection, ident: str,
                  where: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """By id, or else by the endpoint key (name, username, key); `where` (column: value)
        narrows the search to one parent's entities, which a scoped endpoint key needs."""
        conditions = self._where(where)
        if is_uuid(ident):
            found = await self._one(conn, and_(self.table.c.id == ident, *conditions))
            if found is not None:
                return found
        key = self.schema.endpoint_key
        scope = self.schema.endpoint_key_scope
        if key is None or "\x00" in ident:  # PostgreSQL text cannot hold NUL
            return None
        if scope is not None and column_of(scope, self.schema.fields[scope]) not in (where or {}):
            return None  # a key unique only under a parent names nothing on its own
        return await self._one(conn, and_(self._matches(key, ident), *conditions))

    async def find_by(self, conn: AsyncConnection, field: str, value: Any) -> dict[str, Any] | None:
        """The first entity whose `field` holds `value` (or one of its aliases)."""
        return await self._one(conn, and_(self._matches(field, value), *self._live()))

    def _matches(self, name: str, value: Any) -> ColumnElement[bool]:
        """The column of a field holds this value (or, for a field with aliases, one of them)."""
        aliases = self.schema.aliases.get(name)
        if aliases is not None and isinstance(value, str):
            return self.table.c[name].in_(aliases(value))
        return self.table.c[name] == value

    async def _one(self, conn: AsyncConnection, where: ColumnElement[bool]) -> dict[str, Any] | None:
        row = (await conn.execute(select(self.table).where(where).limit(1))).mappings().first()
        return None if row is None else self.to_entity(row)

    async def page(self, conn: AsyncConnection, *, size: int, after: str | None = None,
                   where: Mapping[str, Any] | None = None, tags: list[str] | None = None,
                   any_tag: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `size` entities ordered by id after `after`, and the last id when more follow."""
        conditions = self._where(where)
        if after is not None:
            conditions.append(self.table.c.id > after)
        if tags:
            # tags are JSON text, ["a","b"]: match the quoted tag.
            matches = [self.table.c.tags.like("%" + _escape_like(orjson.dumps(tag).decode()) + "%", escape="\\")
                       for tag in tags]
            conditions.append(or_(*matches) if any_tag else and_(*matches))
        query = select(self.table).where(*conditions).order_by(self.table.c.id).limit(size + 1)
        rows = [self.to_entity(row) for row in (await conn.execute(query)).mappings()]
        if len(rows) > size:
            return rows[:size], rows[size - 1]["id"]
        return rows, None

    async def all(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        query = select(self.table).where(*self._live()).order_by(self.table.c.id)
        return [self.to_entity(row) for row in (await conn.execute(query)).mappings()]

    # Checks, inside the writing transaction

    async def check_unique(self, conn: AsyncConnection, entity: Mapping[str, Any]) -> None:
        """Raise UniqueViolation when another row holds one of this entity's unique values."""
        others = self.table.c.id != entity["id"]
        for name in self.schema.unique:
            value = entity.get(name)
            if value is not None and await self._exists(conn, and_(self._matches(name, value), others)):
                raise UniqueViolation({name: value})
        if self.schema.computed is not None and self.schema.computed_unique is not None:
            for column, value in self.schema.computed(entity).items():
                if await self._exists(conn, and_(self.table.c[column] == value, others)):
                    raise UniqueViolation(self.schema.computed_unique(entity))

    async def check_foreign(self, conn: AsyncConnection, entity: Mapping[str, Any]) -> None:
        """Raise ForeignKeyViolation when a referenced entity does not exist."""
        tables = self.table.metadata.tables
        for name, reference in self.schema.foreign_fields().items():
            ref = entity.get(name)
            if ref is None:
                continue
            parent = tables[reference]
            if not await self._exists(conn, parent.c.id == ref["id"], parent):
                raise ForeignKeyViolation(name, dict(ref))

    async def referencing(self, conn: AsyncConnection, entity_id: str) -> str | None:
        """The first table whose rows still reference this entity and forbid its deletion."""
        tables = self.table.metadata.tables
        for child, column in self.schema.restrict:
            if await self._exists(conn, tables[child].c[column] == entity_id, tables[child]):
                return child
        return None

    async def exists(self, conn: AsyncConnection, entity_id: str) -> bool:
        return await self._exists(conn, self.table.c.id == entity_id)

    async def _exists(self, conn: AsyncConnection, where: ColumnElement[bool],
                      table: Table | None = None) -> bool:
        query = select(exists().where(where).select_from(self.table if table is None else table))
        return bool(await conn.scalar(query))

    # Writes

    async def insert(self, conn: AsyncConnection, entity: Mapping[str, Any]) -> None:
        async with self._constraints(entity):
            await conn.execute(insert(self.table).values(self.to_row(entity)))

    async def update(self, conn: AsyncConnection, entity: Mapping[str, Any], keep: tuple[str, ...] = ()) -> None:
        """Write the entity over its row; the columns in `keep` stay as stored (a PATCH without a
        ttl keeps the time the entity expires)."""
        row = {column: value for column, value in self.to_row(entity).items() if column not in keep}
        async with self._constraints(entity):
            await conn.execute(update(self.table).where(self.table.c.id == entity["id"]).values(row))

    async def purge_expired(self, conn: AsyncConnection) -> int:
        """Delete the rows whose ttl ran out; how many."""
        if not self.schema.ttl:
            return 0
        result = await conn.execute(delete(self.table).where(self.table.c.ttl < int(time.time())))
        return int(result.rowcount or 0)

    async def delete(self, conn: AsyncConnection, entity_id: str) -> None:
        async with self._constraints({"id": entity_id}, deleting=True):
            await conn.execute(delete(self.table).where(self.table.c.id == entity_id))

    @asynccontextmanager
    async def _constraints(self, entity: Mapping[str, Any], *, deleting: bool = False) -> AsyncIterator[None]:
        """A constraint the checks above did not foresee is answered as they would have (409/400)."""
        try:
            yield
        except exc.IntegrityError as err:
            raise self._translate(err, entity, deleting) from err

    def _translate(self, err: exc.IntegrityError, entity: Mapping[str, Any], deleting: bool) -> Exception:
        found = classify(err, self.table.name)
        if found.kind == "foreign key":
            if deleting:
                child = self.schema.restrict[0][0] if self.schema.restrict else "entities"
                return ReferencedBy(self.schema.name, child)
            refs: dict[str, dict[str, object]] = {
                name: dict(entity[name]) for name in self.schema.foreign_fields() if entity.get(name)}
            name, ref = next(iter(refs.items()), ("@entity", {}))
            return ForeignKeyViolation(name, ref)
        if found.kind == "primary key":
            return PrimaryKeyViolation(str(entity.get("id")))
        if found.kind == "not null":
            return SchemaViolation({name: "required field missing" for name in found.columns}
                                           or {"@entity": ["a required field is missing"]})
        by_column = {column_of(name, spec): name for name, spec in self.schema.fields.items()}
        fields = {by_column[c]: entity.get(by_column[c]) for c in found.columns if c in by_column}
        if not fields and self.schema.computed_unique is not None:
            fields = self.schema.computed_unique(entity)
        return UniqueViolation(fields or {"id": entity.get("id")})
