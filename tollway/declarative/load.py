"""`tollway config db_import`: every entity of a declarative file, written in one transaction.

The file is checked whole first (flatten.py): a file with a problem changes nothing. Then, on one
connection and inside one transaction that bumps the configuration version, each entity is
upserted by its id, parents first (Crud.put): an entity already stored as the file says is left
untouched. Like Kong's, an import is not a sync: entities the file does not name stay. A write
the database refuses (a name taken by an entity the file does not know) rolls everything back and
is reported with the entity it concerns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.admin.errors import from_store_error
from tollway.declarative.flatten import Item, flatten
from tollway.declarative.problems import DeclarativeError
from tollway.errors import EntityError, UniqueViolation
from tollway.store.entities.catalog import Catalog
from tollway.store.entities.schema import REDACTED, column_of


@dataclass(frozen=True)
class ImportReport:
    """How many entities the file held, and how many of them were written."""

    entities: int
    written: int


def stored_id_finder(catalog: Catalog, conn: AsyncConnection) -> Any:
    """The lookup flatten() uses: the id of the stored entity with the same natural key (name,
    username, custom_id, group under its consumer, key, a plugin's name and scopes), or None."""

    async def lookup(name: str, built: dict[str, Any]) -> str | None:
        found = await _stored(name, built)
        schema = catalog.entities[name]
        if found is not None and schema.secrets and any(
                found.get(field) != built.get(field) for field in schema.foreign_fields()):
            return None  # a credential is never moved to another consumer: its key stays taken (409)
        return None if found is None else str(found["id"])

    async def _stored(name: str, built: dict[str, Any]) -> dict[str, Any] | None:
        schema = catalog.entities[name]
        dao = catalog.daos[name]
        key = schema.endpoint_key
        if key and isinstance(built.get(key), str):
            scope = schema.endpoint_key_scope
            where = None
            if scope is not None:
                where = {column_of(scope, schema.fields[scope]): (built.get(scope) or {}).get("id")}
            found = await dao.get(conn, built[key], where)
            # by its key (a stored key-auth key is a hash of it), not by an id that a name happens to be
            if found is not None and (found.get(key) == built[key] or key in schema.aliases):
                return found
        for field in schema.unique:
            if built.get(field) is not None:
                found = await dao.find_by(conn, field, built[field])
                if found is not None:
                    return found
        if schema.computed is not None:
            for column, value in schema.computed(built).items():
                row = (await conn.execute(select(dao.table.c.id).where(dao.table.c[column] == value))).first()
                if row is not None:
                    return await dao.get(conn, str(row[0]))
        return None

    return lookup


async def import_document(catalog: Catalog, document: dict[str, Any],
                          on_checked: Callable[[], None] | None = None) -> ImportReport:
    """Check, then write every entity of `document` in one transaction; `on_checked()` runs
    between the two (the CLI says the file parsed)."""
    async with catalog.write() as conn:
        items = await flatten(catalog, document, stored_id_finder(catalog, conn))
        if on_checked is not None:
            on_checked()
        written = 0
        for item in items:
            assert item.built is not None  # flatten() raised otherwise
            try:
                written += await catalog.cruds[item.entity].put(conn, item.built, item.times)
            except EntityError as exc:
                secrets = catalog.entities[item.entity].secrets
                raise DeclarativeError("Failed importing:", _failure(item, _redacted(exc, secrets))) from exc
    return ImportReport(len(items), written)


def _redacted(exc: EntityError, secrets: tuple[str, ...]) -> EntityError:
    """A unique violation on a secret (a key) names it without its value."""
    if isinstance(exc, UniqueViolation) and any(name in secrets for name in exc.fields):
        return UniqueViolation({name: REDACTED if name in secrets else value for name, value in exc.fields.items()})
    return exc


def _failure(item: Item, exc: EntityError) -> str:
    mapped = from_store_error(exc)
    message = str(mapped.body.get("message")) if mapped is not None else str(exc)
    return f"in '{item.entity}':\n  - in {item.problems.label}:\n    {message}"
