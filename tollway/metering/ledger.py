"""Writes to the billable ledger: additive upserts, last known names, spool offsets, retention.

Every function takes a connection inside the caller's transaction, so the flusher can commit
usage and the spool offsets that produced it together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.plugins.billable.tables import names, spool_offsets, usage

BATCH = 2000  # rows per executemany

# What a database that cannot be reached raises (through SQLAlchemy or from the socket itself).
UNAVAILABLE = (OSError, OperationalError, InterfaceError, TimeoutError)


def describe(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's statement dump."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]

_USAGE_KEY = ["grain", "bucket_start", "consumer_id", "service_id", "route_id", "status"]
_USAGE_SUMS = ["requests", "request_bytes", "response_bytes", "latency_us_sum"]


def _insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def _execute_many(conn: AsyncConnection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        await conn.execute(statement, list(rows[start:start + BATCH]))


async def add_usage(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Add each row's totals to the ledger row of the same key (inserting it when new)."""
    if not rows:
        return
    insert = _insert(conn)(usage)
    statement = insert.on_conflict_do_update(
        index_elements=_USAGE_KEY,
        set_={name: usage.c[name] + insert.excluded[name] for name in _USAGE_SUMS},
    )
    await _execute_many(conn, statement, sorted(rows, key=lambda row: [row[k] for k in _USAGE_KEY]))


async def remember_names(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Record the names seen, unless a later sighting is already stored."""
    if not rows:
        return
    insert = _insert(conn)(names)
    statement = insert.on_conflict_do_update(
        index_elements=["kind", "id"],
        set_={"name": insert.excluded.name, "custom_id": insert.excluded.custom_id,
              "seen_ms": insert.excluded.seen_ms},
        where=names.c.seen_ms <= insert.excluded.seen_ms,
    )
    await _execute_many(conn, statement, sorted(rows, key=lambda row: (row["kind"], row["id"])))


async def load_offsets(conn: AsyncConnection, node_id: str) -> dict[str, int]:
    """file name -> committed offset, for this node's spool."""
    result = await conn.execute(
        select(spool_offsets.c.file, spool_offsets.c.position).where(spool_offsets.c.node_id == node_id))
    return {file: int(position) for file, position in result}


async def save_offsets(conn: AsyncConnection, node_id: str, offsets: dict[str, int]) -> None:
    """Set the committed offset of each file."""
    if not offsets:
        return
    insert = _insert(conn)(spool_offsets)
    statement = insert.on_conflict_do_update(
        index_elements=["node_id", "file"], set_={"position": insert.excluded.position})
    await _execute_many(conn, statement, [{"node_id": node_id, "file": file, "position": position}
                                          for file, position in sorted(offsets.items())])


async def forget_offsets(conn: AsyncConnection, node_id: str, files: Iterable[str]) -> None:
    """Drop the offset rows of files that no longer exist (names are never reused)."""
    files = sorted(files)
    for start in range(0, len(files), BATCH):
        await conn.execute(delete(spool_offsets).where(
            spool_offsets.c.node_id == node_id, spool_offsets.c.file.in_(files[start:start + BATCH])))


async def purge_expired(conn: AsyncConnection, now: float, minute_days: int, hour_days: int) -> int:
    """Delete minute rows older than `minute_days` and hour rows older than `hour_days`; rows deleted."""
    deleted = 0
    for grain, days in (("minute", minute_days), ("hour", hour_days)):
        result = await conn.execute(delete(usage).where(
            usage.c.grain == grain, usage.c.bucket_start < int(now) - days * 86_400))
        deleted += result.rowcount or 0
    return deleted
