"""What Admin API endpoints (core and plugins' api.py) share: settings, database, entities."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.admin.dao import Dao
from tollway.admin.registry import entities_for
from tollway.admin.schema import EntitySchema
from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.snapshot import bump_version

log = logging.getLogger(__name__)


class AdminContext:
    """Settings, database and the entities of this configuration, with their DAOs."""

    def __init__(self, settings: Settings, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.db = db
        self.on_change = on_change
        self.entities: dict[str, EntitySchema] = {schema.name: schema for schema in entities_for(settings)}
        self.daos: dict[str, Dao] = {name: Dao(schema) for name, schema in self.entities.items()}

    def by_path(self, path: str) -> EntitySchema | None:
        return next((schema for schema in self.entities.values() if schema.path == path), None)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for one Admin API write: the version is bumped first, so that concurrent
        writers queue on its row lock (checks then writes see no interleaving), and on_change() runs
        after the commit."""
        async with self.db.begin() as conn:
            await bump_version(conn)
            yield conn
        self.changed()

    def changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # a failing listener must not turn a committed write into an error
            log.exception("on_change callback failed")
