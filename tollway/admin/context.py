"""What Admin API endpoints (core and plugins' api.py) share: the catalog of entities.

An `AdminContext` is the store's `Catalog` for this configuration (settings, db, entities with
their DAOs and CRUD, `write()`), so a plugin's api.py reads `ctx.db`, `ctx.settings` and
`ctx.crud(name)`.
"""

from __future__ import annotations

from tollway.store.entities.catalog import Catalog


class AdminContext(Catalog):
    """The catalog the Admin API serves."""
