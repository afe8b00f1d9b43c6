"""`tollway config db_export`: every stored entity, flat, as Kong's `kong config db_export` writes.

The document holds `_format_version: "3.0"` and `_transform: false`, then one array per entity
that has any, in alphabetical order, each ordered by id. Every field is there, nulls included,
with foreign keys as the bare id (`service: <uuid>`). Values are as stored: key-auth keys are
their `sha256:` hashes when keys are hashed (importing one stores it as it is, and the same key
still authenticates), plugin secrets in full; a credential's ttl is the seconds it has left.
Importing the export gives the same configuration.
"""

from __future__ import annotations

from typing import Any

from tollway.declarative.fileformat import CURRENT_FORMAT
from tollway.store.entities.catalog import Catalog


async def export_document(catalog: Catalog) -> dict[str, Any]:
    """The whole configuration as one declarative document, read in one transaction."""
    document: dict[str, Any] = {"_format_version": CURRENT_FORMAT, "_transform": False}
    async with catalog.db.connect() as conn:
        if catalog.db.dialect == "postgresql":  # one consistent view of every table
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            tables = {name: await catalog.daos[name].all(conn) for name in sorted(catalog.entities)
                      if catalog.entities[name].declarative}
    for name, entities in tables.items():
        if not entities:
            continue
        foreign = catalog.entities[name].foreign_fields()
        document[name] = [
            {key: (value or {}).get("id") if key in foreign else value for key, value in entity.items()}
            for entity in entities]
    return document
