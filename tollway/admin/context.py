"""What Admin API endpoints (core and plugins' api.py) share: the catalog of entities.

An `AdminContext` is the store's `Catalog` for this configuration (settings, db, entities with
their DAOs and CRUD, `write()`), so a plugin's api.py reads `ctx.db`, `ctx.settings` and
`ctx.crud(name)`, and `ctx.node_status()` gives GET /status's figures of the node (or None
outside a running node).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.entities.catalog import Catalog

NodeStatus = Callable[[], Mapping[str, Any]]


class AdminContext(Catalog):
    """The catalog the Admin API serves, and the node's figures."""

    def __init__(self, settings: Settings, db: Database, on_change: Callable[[], None] | None = None,
                 node_status: NodeStatus | None = None) -> None:
        super().__init__(settings, db, on_change)
        self.node_status = node_status
