"""Writes to the billable ledger: additive upserts, last known names, spool offsets, retention.

Every function takes a connection inside the caller's transaction, so the flusher can commit
usage and the spool offsets that produced it together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.metering.tables import latency, names, rollup, spool_offsets, usage

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


_ROLLUP_KEY = ["grain", "bucket_start", "service_id", "route_id", "status"]


async def _add_sums(conn: AsyncConnection, table: Any, key: list[str], rows: Sequence[dict[str, Any]]) -> None:
    insert = _insert(conn)(table)
    statement = insert.on_conflict_do_update(
        index_elements=key,
        set_={name: table.c[name] + insert.excluded[name] for name in _USAGE_SUMS},
    )
    await _execute_many(conn, statement, sorted(rows, key=lambda row: [row[k] for k in key]))


def rollup_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The usage rows summed over consumers: billable_usage_routes rows."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        key = (row["grain"], row["bucket_start"], row["service_id"], row["route_id"], row["status"])
        found = sums.get(key)
        if found is None:
            sums[key] = [row["requests"], row["request_bytes"], row["response_bytes"], row["latency_us_sum"]]
        else:
            found[0] += row["requests"]
            found[1] += row["request_bytes"]
            found[2] += row["response_bytes"]
            found[3] += row["latency_us_sum"]
    return [{"grain": grain, "bucket_start": start, "service_id": service, "route_id": route, "status": status,
             "requests": found[0], "request_bytes": found[1], "response_bytes": found[2], "latency_us_sum": found[3]}
            for (grain, start, service, route, status), found in sums.items()]


async def add_usage(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Add each row's totals to the ledger row of the same key (inserting it when new), and their
    sums over consumers to the rollup (billable_usage_routes): one transaction keeps both exact."""
    if not rows:
        return
    await _add_sums(conn, usage, _USAGE_KEY, rows)
    await _add_sums(conn, rollup, _ROLLUP_KEY, rollup_rows(rows))


_LATENCY_KEY = ["grain", "bucket_start", "service_id", "route_id", "bucket"]


async def add_latencies(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Add each row's calls to the latency histogram row of the same key (inserting it when new)."""
    if not rows:
        return
    insert = _insert(conn)(latency)
    statement = insert.on_conflict_do_update(index_elements=_LATENCY_KEY,
                                             set_={"calls": latency.c.calls + insert.excluded.calls})
    await _execute_many(conn, statement, sorted(rows, key=lambda row: [row[k] for k in _LATENCY_KEY]))


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


class OffsetConflict(Exception):
    """A spool offset is not at the value this flush read: another flusher moved it."""


async def move_offsets(conn: AsyncConnection, node_id: str, moves: dict[str, tuple[int | None, int]]) -> None:
    """Move each file's offset from `old` (None: no row yet) to `new`; OffsetConflict when it is
    not at `old` any more, so the caller's transaction is rolled back."""
    for file, (old, new) in sorted(moves.items()):
        if old is None:
            result = await conn.execute(_insert(conn)(spool_offsets).values(
                node_id=node_id, file=file, position=new).on_conflict_do_nothing())
        else:
            result = await conn.execute(update(spool_offsets).where(
                spool_offsets.c.node_id == node_id, spool_offsets.c.file == file,
                spool_offsets.c.position == old).values(position=new))
        if result.rowcount != 1:
            raise OffsetConflict(f"spool file {file} is no longer at offset {old or 0}")


async def forget_offsets(conn: AsyncConnection, node_id: str, files: dict[str, int]) -> None:
    """Drop the offset rows of files that no longer exist (names are never reused), if unchanged."""
    for file, position in sorted(files.items()):
        await conn.execute(delete(spool_offsets).where(
            spool_offsets.c.node_id == node_id, spool_offsets.c.file == file,
            spool_offsets.c.position == position))


async def purge_expired(conn: AsyncConnection, now: float, minute_days: int, hour_days: int) -> int:
    """Delete minute rows older than `minute_days` and hour rows older than `hour_days` (usage, its
    rollup and latency histograms); rows deleted."""
    deleted = 0
    for table in (usage, rollup, latency):
        for grain, days in (("minute", minute_days), ("hour", hour_days)):
            result = await conn.execute(delete(table).where(
                table.c.grain == grain, table.c.bucket_start < int(now) - days * 86_400))
            deleted += result.rowcount or 0
    return deleted
