"""The entities of one configuration: the core ones and those of enabled plugins, with their DAOs.

`Catalog(settings, db)` is what reads and writes entities: `crud(name)` for one entity's CRUD,
`write()` for a transaction that bumps the configuration version (so that every node reloads)
and, once committed, tells `on_change`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.config import Settings
from tollway.plugins import registry
from tollway.store.db import Database
from tollway.store.entities.consumers import CONSUMERS
from tollway.store.entities.crud import Crud
from tollway.store.entities.dao import Dao
from tollway.store.entities.plugins import plugins_entity
from tollway.store.entities.routes import ROUTES
from tollway.store.entities.schema import EntitySchema
from tollway.store.entities.services import SERVICES
from tollway.store.version import bump_version

log = logging.getLogger(__name__)


def core_entities(settings: Settings) -> list[EntitySchema]:
    """Services, routes, consumers and plugins (whose config follows the enabled plugins)."""
    return [SERVICES, ROUTES, CONSUMERS, plugins_entity(settings.enabled_plugins)]


def plugin_entities(settings: Settings) -> list[EntitySchema]:
    """The entities of core components and enabled plugins (their daos.py), core first."""
    found: list[EntitySchema] = []
    for _owner, module in registry.parts(settings.enabled_plugins, "daos"):
        # entities(settings) when they depend on settings (key-auth's hashing), else ENTITIES
        found.extend(module.entities(settings) if hasattr(module, "entities") else module.ENTITIES)
    return found


def entities_for(settings: Settings) -> list[EntitySchema]:
    """Core entities first, then plugin entities."""
    return core_entities(settings) + plugin_entities(settings)


class Catalog:
    """Settings, database, and the entities of this configuration with their DAOs and CRUD."""

    def __init__(self, settings: Settings, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.db = db
        self.on_change = on_change
        self.entities: dict[str, EntitySchema] = {schema.name: schema for schema in entities_for(settings)}
        self.daos: dict[str, Dao] = {name: Dao(schema) for name, schema in self.entities.items()}
        self.cruds: dict[str, Crud] = {name: Crud(self, schema) for name, schema in self.entities.items()}

    def crud(self, name: str) -> Crud:
        return self.cruds[name]

    def by_path(self, path: str) -> EntitySchema | None:
        return next((schema for schema in self.entities.values() if schema.path == path), None)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for one write: the version is bumped first, so that concurrent writers
        queue on its row lock (checks then writes see no interleaving), and on_change() runs after
        the commit."""
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
