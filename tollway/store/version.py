"""The configuration version: bumped by every write to the configuration, polled by every node."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.db import Database
from tollway.store.tables import config_version as version_table


async def bump_version(conn: AsyncConnection) -> None:
    """Increment the configuration version inside the caller's transaction."""
    await conn.execute(update(version_table).values(version=version_table.c.version + 1))


async def read_version(conn: AsyncConnection) -> int:
    """The version as this connection's transaction sees it."""
    return int(await conn.scalar(select(version_table.c.version)) or 0)


async def config_version(db: Database) -> int:
    """The current configuration version (bumped by every Admin API write)."""
    async with db.connect() as conn:
        return await read_version(conn)
