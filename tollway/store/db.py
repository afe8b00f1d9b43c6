"""The database handle: one async SQLAlchemy engine for SQLite (embedded) or PostgreSQL (cluster)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event, exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tollway.config import Settings
from tollway.errors import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# aiosqlite logs every statement with its parameters (key-auth keys) at DEBUG: never let it.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")      # readers (tollway report) never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")    # durable at every commit in WAL mode but for power loss
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """Owns the engine; everything else borrows connections from `engine`."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.dialect: str = engine.dialect.name

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if settings.database == "sqlite":
            path = settings.database_path
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"database unavailable: cannot create {path.parent}: {exc.strerror}") from exc
            # NullPool: aiosqlite connections are cheap, and a fresh one never holds a stale snapshot.
            # hide_parameters: a statement's values (key-auth keys) never reach an error message or log.
            engine = create_async_engine(f"sqlite+aiosqlite:///{path}", poolclass=NullPool, hide_parameters=True)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            url = URL.create(
                "postgresql+asyncpg",
                username=settings.pg_user or None,
                password=settings.pg_password or None,
                host=settings.pg_host,
                port=settings.pg_port,
                database=settings.pg_database,
            )
            connect_args: dict[str, Any] = {
                "timeout": settings.pg_timeout,
                "command_timeout": max(settings.pg_timeout, 30.0),
            }
            if settings.pg_ssl:
                connect_args["ssl"] = True
            if settings.pg_schema:
                connect_args["server_settings"] = {"search_path": settings.pg_schema}
            engine = create_async_engine(
                url,
                pool_size=max(settings.pg_pool_size, 1),
                max_overflow=2,
                pool_pre_ping=True,
                pool_recycle=300,
                hide_parameters=True,
                connect_args=connect_args,
            )
        return cls(engine, settings)

    async def dispose(self) -> None:
        await self.engine.dispose()

    def describe(self) -> str:
        """Where the data lives, for messages: the SQLite file or host:port/database."""
        s = self.settings
        if self.dialect == "sqlite":
            return str(s.database_path)
        return f"{s.pg_host}:{s.pg_port}/{s.pg_database}" + (f" (schema {s.pg_schema})" if s.pg_schema else "")

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection without a transaction block; connection failures raise StoreUnavailable."""
        async with self._translated(), self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction committed on exit; connection failures raise StoreUnavailable."""
        async with self._translated(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except (TimeoutError, OSError, exc.InterfaceError) as err:
            raise StoreUnavailable(f"database unavailable at {self.describe()}: {_reason(err)}") from err
        except exc.DBAPIError as err:
            if err.connection_invalidated or _is_connect_error(err):
                raise StoreUnavailable(f"database unavailable at {self.describe()}: {_reason(err)}") from err
            raise


# SQLSTATE classes and codes that mean "the database cannot serve us now", not "this statement is
# wrong": 08 connection exceptions, 57P operator intervention (admin or crash shutdown, cannot
# connect now: starting up, shutting down, in recovery), 53300 too many connections, 3D000 no such
# database, 28 authorization (a password changed under a running node).
_UNAVAILABLE_STATES = ("08", "57P", "53300", "3D000", "28")


def _causes(err: BaseException) -> list[BaseException]:
    """`err`, the driver's error it wraps and what caused that: SQLAlchemy's asyncpg adapter wraps
    asyncpg's exception in one of its own and chains the original as the cause."""
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in found and len(found) < 5:
        found.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return found


def _is_connect_error(err: exc.DBAPIError) -> bool:
    for cause in _causes(err):
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES):
            return True
        if isinstance(cause, ConnectionError | TimeoutError):
            return True
        if type(cause).__module__.startswith("asyncpg") and type(cause).__name__ in (
                "ConnectionDoesNotExistError", "InternalClientError"):
            return True  # the connection went away under an operation, or closed while one was in flight
    # aiosqlite: the file cannot be opened (a directory gone, permissions)
    return "unable to open database" in str(err.orig)


def _reason(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err.__cause__ or err
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return text


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work(db)` in a fresh event loop on a Database for `settings`, disposed of afterwards.

    For synchronous callers (CLI commands, tests) that need the database once.
    """

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())
