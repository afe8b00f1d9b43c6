"""The migrations runner, re-exported by tollway.store.migrations.

Subsystems are the core's (the store's tables as `core`, the usage ledger's as `metering`, ...:
tollway.plugins.registry.CORE_COMPONENTS) and every enabled plugin with a `migrations` package. A subsystem's
package may name, in RECORDED_AS, subsystems whose recorded migrations count as its own (the
ledger's were recorded as `billable`'s while it belonged to that plugin).
 A migration is a module `NNN_name.py` with `def up(conn) -> None` (a synchronous
SQLAlchemy Connection); it runs in the same transaction that records it in `schema_meta`, so a
failed migration leaves nothing behind on PostgreSQL and is simply retried by the next run.

Nodes of a cluster may run `tollway migrations bootstrap` or `up` at the same time: every step
takes a lock first (a transaction-scoped advisory lock per schema on PostgreSQL, the write lock on
SQLite) and checks again, under it, whether another process did that step meanwhile.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from sqlalchemy import MetaData, inspect, select, text
from sqlalchemy.engine import Connection

from tollway.config import Settings
from tollway.errors import NotBootstrapped, StoreError
from tollway.plugins import registry
from tollway.store.db import Database
from tollway.store.tables import schema_meta

log = logging.getLogger(__name__)

CORE = "core"
_MIGRATION_NAME = re.compile(r"^\d{3}_\w+$")


@dataclass(frozen=True)
class Migration:
    subsystem: str
    name: str
    up: Callable[[Connection], None]


@dataclass(frozen=True)
class SubsystemState:
    """What ran and what is left for one subsystem."""

    subsystem: str
    executed: tuple[str, ...]
    pending: tuple[str, ...]


def _package_migrations(subsystem: str, package: ModuleType) -> list[Migration]:
    found: list[Migration] = []
    for info in pkgutil.iter_modules(package.__path__):
        if _MIGRATION_NAME.match(info.name):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found.append(Migration(subsystem, info.name, module.up))
    return sorted(found, key=lambda m: m.name)


def _packages(settings: Settings) -> dict[str, ModuleType]:
    return dict(registry.parts(settings.enabled_plugins, "migrations"))


def known_migrations(settings: Settings) -> dict[str, list[Migration]]:
    """Every subsystem of this configuration and its migrations, in the order they run."""
    return {name: _package_migrations(name, package) for name, package in _packages(settings).items()}


def _aliases(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Subsystem -> the subsystems whose records count as its own (RECORDED_AS)."""
    return {name: tuple(getattr(package, "RECORDED_AS", ())) for name, package in _packages(settings).items()}


def _is_bootstrapped(conn: Connection) -> bool:
    return bool(inspect(conn).has_table(schema_meta.name))


def _executed(conn: Connection, aliases: dict[str, tuple[str, ...]] | None = None) -> dict[str, set[str]]:
    """Subsystem -> the names of its migrations that ran (with those recorded under its aliases)."""
    done: dict[str, set[str]] = {}
    for subsystem, name in conn.execute(select(schema_meta.c.subsystem, schema_meta.c.name)):
        done.setdefault(subsystem, set()).add(name)
    for subsystem, others in (aliases or {}).items():
        for other in others:
            done.setdefault(subsystem, set()).update(done.get(other, ()))
    return done


def _lock(conn: Connection) -> None:
    """Hold the migrations lock until the transaction ends: an advisory lock of this schema on
    PostgreSQL, the database's write lock on SQLite. The first statement of its transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('tollway migrations ' || current_schema()))"))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits for another writer (busy_timeout)


async def _apply(db: Database, todo: list[Migration], aliases: dict[str, tuple[str, ...]]) -> list[Migration]:
    ran = []
    for migration in todo:

        def step(conn: Connection, migration: Migration = migration) -> bool:
            _lock(conn)
            if migration.name in _executed(conn, aliases).get(migration.subsystem, set()):
                return False  # another node ran it while this one waited for the lock
            log.info("migrating %s: %s", migration.subsystem, migration.name)
            migration.up(conn)
            conn.execute(schema_meta.insert().values(
                subsystem=migration.subsystem, name=migration.name, executed_at=int(time.time())))
            return True

        async with db.begin() as conn:
            if await conn.run_sync(step):
                ran.append(migration)
    return ran


async def is_bootstrapped(db: Database) -> bool:
    async with db.connect() as conn:
        return await conn.run_sync(_is_bootstrapped)


async def bootstrap(db: Database, settings: Settings) -> list[Migration]:
    """Create `schema_meta` and run every migration; on a bootstrapped database do nothing.

    Returns the migrations that ran (empty when the database was already bootstrapped).
    """
    if await is_bootstrapped(db):
        return []
    def create(conn: Connection) -> None:
        _lock(conn)
        schema_meta.create(conn, checkfirst=True)

    async with db.begin() as conn:
        await conn.run_sync(create)
    return await up(db, settings)


async def pending(db: Database, settings: Settings) -> list[Migration]:
    """Migrations of this configuration that have not run yet, in order."""
    await ensure_bootstrapped(db)
    aliases = _aliases(settings)
    async with db.connect() as conn:
        done = await conn.run_sync(_executed, aliases)
    return [m for subsystem, todo in known_migrations(settings).items()
            for m in todo if m.name not in done.get(subsystem, set())]


async def up(db: Database, settings: Settings) -> list[Migration]:
    """Run the pending migrations of core and the enabled plugins; returns those that ran here."""
    return await _apply(db, await pending(db, settings), _aliases(settings))


async def list_state(db: Database, settings: Settings) -> list[SubsystemState]:
    """Per subsystem, the executed and pending migrations (raises NotBootstrapped)."""
    await ensure_bootstrapped(db)
    async with db.connect() as conn:
        done = await conn.run_sync(_executed, _aliases(settings))
    states = []
    for subsystem, known in known_migrations(settings).items():
        ran = done.get(subsystem, set())
        states.append(SubsystemState(subsystem, tuple(sorted(ran)),
                                     tuple(m.name for m in known if m.name not in ran)))
    return states


async def ensure_bootstrapped(db: Database, settings: Settings | None = None) -> None:
    """Raise NotBootstrapped unless `tollway migrations bootstrap` has run on this database.

    With settings, also raise StoreError when migrations of the enabled plugins are pending
    (a node must not serve a plugin whose tables are missing).
    """
    if not await is_bootstrapped(db):
        raise NotBootstrapped()
    if settings is not None:
        await ensure_up_to_date(db, settings)


async def ensure_up_to_date(db: Database, settings: Settings) -> None:
    """Raise StoreError when migrations of this configuration are pending (for `tollway start`)."""
    todo = await pending(db, settings)
    if todo:
        names = ", ".join(f"{m.subsystem}/{m.name}" for m in todo)
        raise StoreError(f"the database has pending migrations ({names}); run 'tollway migrations up'")


async def reset(db: Database) -> None:
    """Drop every table of the database (or of `pg_schema`)."""
    def drop_all(conn: Connection) -> None:
        meta = MetaData()
        meta.reflect(conn)
        meta.drop_all(conn)

    async with db.begin() as conn:
        await conn.run_sync(drop_all)
