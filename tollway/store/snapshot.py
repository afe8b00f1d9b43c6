"""The configuration snapshot the master pushes to workers, and the version that says it changed.

The snapshot holds every entity as the Admin API shows it, read in one consistent transaction;
only plugins enabled in settings are included. Secrets are sent in the form workers need: a
key-auth credential's key is always its `sha256:` hash, even when stored readable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.tables import config_version as version_table

SNAPSHOT_KEYS = ("services", "routes", "consumers", "plugins", "keyauth_credentials")


async def bump_version(conn: AsyncConnection) -> None:
    """Increment the configuration version inside the caller's transaction."""
    await conn.execute(update(version_table).values(version=version_table.c.version + 1))


async def _version(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(version_table.c.version)) or 0)


async def config_version(db: Database) -> int:
    """The current configuration version (bumped by every Admin API write)."""
    async with db.connect() as conn:
        return await _version(conn)


async def load_snapshot(db: Database, settings: Settings) -> dict[str, Any]:
    """{"version", "services", "routes", "consumers", "plugins", "keyauth_credentials"}."""
    from tollway.admin.dao import Dao  # entities are shaped as the Admin API shows them
    from tollway.admin.registry import entities_for

    schemas = {schema.name: schema for schema in entities_for(settings)}
    daos = {name: Dao(schema) for name, schema in schemas.items()}
    enabled = set(settings.enabled_plugins)
    async with db.connect() as conn:
        if db.dialect == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            snapshot: dict[str, Any] = {"version": await _version(conn)}
            for key in SNAPSHOT_KEYS:
                snapshot[key] = await daos[key].all(conn) if key in daos else []
    snapshot["plugins"] = [p for p in snapshot["plugins"] if p["name"] in enabled]
    for key in SNAPSHOT_KEYS:  # secrets leave the master only in the form workers need (key hashes)
        shape = schemas[key].for_workers if key in schemas else None
        if shape is not None:
            snapshot[key] = [shape(entity) for entity in snapshot[key]]
    return snapshot
