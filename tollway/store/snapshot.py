"""The configuration snapshot the master pushes to workers.

The snapshot holds every entity as the Admin API shows it, read in one consistent transaction;
only plugins enabled in settings are included. Secrets are sent in the form workers need (an
entity's `for_workers`): a key-auth credential's key is always its `sha256:` hash, even when
stored readable.
"""

from __future__ import annotations

from typing import Any

from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.entities.catalog import entities_for
from tollway.store.entities.dao import Dao
from tollway.store.version import read_version


async def load_snapshot(db: Database, settings: Settings) -> dict[str, Any]:
    """{"version", then every entity's name (services, routes, ...): its entities}."""
    schemas = {schema.name: schema for schema in entities_for(settings) if schema.in_snapshot}
    daos = {name: Dao(schema) for name, schema in schemas.items()}
    enabled = set(settings.enabled_plugins)
    async with db.connect() as conn:
        if db.dialect == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            snapshot: dict[str, Any] = {"version": await read_version(conn)}
            for name, dao in daos.items():
                snapshot[name] = await dao.all(conn)
    snapshot["plugins"] = [p for p in snapshot["plugins"] if p["name"] in enabled]
    for name, schema in schemas.items():  # secrets leave the master only in the form workers need
        if schema.for_workers is not None:
            snapshot[name] = [schema.for_workers(entity) for entity in snapshot[name]]
    return snapshot
