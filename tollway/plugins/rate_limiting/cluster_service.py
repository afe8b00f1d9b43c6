"""The `cluster` policy, the master's side: the node's counting service, on the shared database.

The workers' calls arrive on the node's abstract Unix socket (cluster.py). What arrived while a
transaction ran is decided in the next one, all together, in a single transaction:

1. every counter the calls need gets its row (`INSERT ... ON CONFLICT DO NOTHING`): one row per
   (plugin, period, identity, window end) in `ratelimiting_cluster`, shared by every node (on
   PostgreSQL only for rows the node has not made yet: a round trip saved);
2. those rows are read and locked, in one global order (`SELECT ... ORDER BY ... FOR UPDATE` on
   PostgreSQL, so two nodes never deadlock; on SQLite the INSERT took the database's write lock);
3. each call is decided in turn, as the local policy does: admitted when each of its counters has
   room (used + 1 <= limit), and then each grows by one; a refused call changes nothing;
4. the rows that grew are written, the transaction commits, and each call gets its answer.

Another node's transaction on the same rows waits for the lock, then sees the counts this one
committed: nothing is counted twice, nothing is lost, and a window admits exactly
min(arrivals, limit) across every node and worker. Under load a transaction decides many calls,
so the database sees one round trip per batch, not per call. A database that fails (unreachable,
slower than pg_timeout) fails the batch: each call is answered an error, which the handler
serves or answers 500 as `fault_tolerant` says. Rows of ended windows are deleted every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.plugins.node import NodeContext
from tollway.plugins.rate_limiting.cluster import MAX_LINE, address

log = logging.getLogger("tollway.rate-limiting")

TABLE = "ratelimiting_cluster"
CLEAN_EVERY = 60.0    # seconds between two deletions of ended windows' rows
MAX_BATCH = 1000      # calls decided in one transaction at most (6 periods x 4 columns: < 32,766 parameters)
KNOWN_ROWS = 100_000  # rows a node remembers having made
LOG_EVERY = 10.0      # seconds between two logs of a failing database

meta = MetaData()
counters_table = Table(
    TABLE, meta,
    Column("scope", String(64), primary_key=True),       # the plugin's id
    Column("period", String(8), primary_key=True),
    Column("identity", Text, primary_key=True),
    Column("window_end", BigInteger, primary_key=True),  # epoch seconds
    Column("used", BigInteger, nullable=False),
)

CounterKey = tuple[str, str, str, int]
Waiting = tuple[int, list[Any], asyncio.StreamWriter]   # (id, counters, where to answer)


class ClusterCounting:
    """GET /status -> rate-limiting-cluster: calls decided and admitted, database failures."""

    name = "rate-limiting-cluster"

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.server: asyncio.Server | None = None
        self.pending: list[Waiting] = []
        self.wake = asyncio.Event()
        self.decider: asyncio.Task[None] | None = None
        self.connections: set[asyncio.StreamWriter] = set()
        self.decided = self.admitted = self.batches = self.failures = 0
        self.last_error = ""
        self.last_clean = 0.0
        self.last_logged = -LOG_EVERY
        self.known: set[CounterKey] = set()   # rows made already (decide)
        # SQLite: one connection kept for the decisions (the node's engine opens one, and its
        # thread, for every transaction: most of a batch's cost); None until the first batch
        self.held: AsyncConnection | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address(str(self.node.settings.prefix)))
        self.server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        self.decider = asyncio.get_running_loop().create_task(self._decide_loop())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections):
            writer.close()
        if self.decider is not None:
            self.decider.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.decider
        await self._release()

    async def _release(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.close()

    def status(self) -> dict[str, Any]:
        return {"decided": self.decided, "admitted": self.admitted, "transactions": self.batches,
                "database_failures": self.failures, "last_error": self.last_error}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            while line := await reader.readline():
                request = orjson.loads(line)
                self.pending.append((request["i"], request["c"], writer))
                self.wake.set()
        except (OSError, ValueError) as exc:
            log.warning("rate-limiting cluster: a worker's connection failed: %s", exc)
        finally:
            self.connections.discard(writer)
            writer.close()

    async def _decide_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                await self._decide(batch)
            if time.monotonic() - self.last_clean >= CLEAN_EVERY:
                await self._clean()

    async def _decide(self, batch: list[Waiting]) -> None:
        try:
            async with asyncio.timeout(max(float(self.node.settings.pg_timeout), 1.0) * 2):
                db = self.node.db
                if db.dialect == "sqlite" and self.held is None:
                    self.held = await db.engine.connect()
                answers = await decide(db, [counters for _, counters, _ in batch], self.known, self.held)
        except Exception as exc:  # noqa: BLE001 - any failure of the database fails the batch, said to each call
            await self._release()  # the next batch connects again
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if time.monotonic() - self.last_logged >= LOG_EVERY:
                self.last_logged = time.monotonic()
                log.error("rate-limiting cluster: the database failed: %s (%d failed transactions so far)",
                          self.last_error, self.failures)
            for request_id, _, writer in batch:
                _answer(writer, {"i": request_id, "e": f"the database failed: {self.last_error}"})
            return
        self.batches += 1
        self.decided += len(batch)
        for (request_id, _, writer), (admitted, counts) in zip(batch, answers, strict=True):
            self.admitted += admitted
            _answer(writer, {"i": request_id, "a": admitted, "n": counts})

    async def _clean(self) -> None:
        self.last_clean = time.monotonic()
        try:
            async with self.node.db.begin() as conn:
                await conn.execute(delete(counters_table).where(counters_table.c.window_end < int(time.time()) - 1))
        except Exception as exc:  # noqa: BLE001 - cleaning is retried in a minute
            log.warning("rate-limiting cluster: could not delete ended windows: %s", exc)


def _answer(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    if not writer.is_closing():
        writer.write(orjson.dumps(message) + b"\n")


async def decide(db: Any, calls: list[list[Any]], known: set[CounterKey] | None = None,
                 held: AsyncConnection | None = None) -> list[tuple[bool, list[int]]]:
    """Decide each call (its counters: [scope, period, identity, window_end, limit] each) in one
    transaction, in order: (admitted, the counts after) for each. `known`: the rows this node saw
    already (they need no INSERT: a round trip saved), updated. `held`: a connection to run the
    transaction on, instead of one of the engine's."""
    keys: list[CounterKey] = sorted({(c[0], c[1], c[2], int(c[3])) for counters in calls for c in counters})
    if not keys:
        return [(True, []) for _ in calls]
    table = counters_table
    columns = (table.c.scope, table.c.period, table.c.identity, table.c.window_end)
    dialect = postgresql if db.dialect == "postgresql" else sqlite
    query = select(*columns, table.c.used).where(tuple_(*columns).in_(keys)).order_by(*columns)
    if db.dialect == "postgresql":
        query = query.with_for_update()

    async def insert(conn: Any, missing: list[CounterKey]) -> None:
        rows = [{"scope": k[0], "period": k[1], "identity": k[2], "window_end": k[3], "used": 0} for k in missing]
        await conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)

    if db.dialect != "postgresql":
        # SQLite's driver begins the transaction at the first write: the INSERT must come first,
        # so that the rows are read under the write lock (a SELECT first would run outside it)
        known = None
    async with _transaction(db, held) as conn:
        missing = keys if known is None else [k for k in keys if k not in known]
        if missing:
            await insert(conn, missing)
        used: dict[CounterKey, int] = {(r[0], r[1], r[2], int(r[3])): int(r[4]) for r in await conn.execute(query)}
        if len(used) < len(keys):  # a row this node knew is gone (deleted as ended): made again
            await insert(conn, [k for k in keys if k not in used])
            used = {(r[0], r[1], r[2], int(r[3])): int(r[4]) for r in await conn.execute(query)}
        if known is not None:
            if len(known) > KNOWN_ROWS:
                known.clear()
            known.update(keys)
        before = dict(used)
        answers: list[tuple[bool, list[int]]] = []
        for counters in calls:
            mine = [(c[0], c[1], c[2], int(c[3])) for c in counters]
            admitted = all(used[key] + 1 <= int(c[4]) for key, c in zip(mine, counters, strict=True))
            if admitted:
                for key in mine:
                    used[key] += 1
            answers.append((admitted, [used[key] for key in mine]))
        grown = [{"k_scope": k[0], "k_period": k[1], "k_identity": k[2], "k_end": k[3], "k_used": n}
                 for k, n in used.items() if n != before[k]]
        if grown:
            await conn.execute(
                update(table).where(table.c.scope == bindparam("k_scope"), table.c.period == bindparam("k_period"),
                                    table.c.identity == bindparam("k_identity"),
                                    table.c.window_end == bindparam("k_end")).values(used=bindparam("k_used")),
                grown)
    return answers


@contextlib.asynccontextmanager
async def _transaction(db: Any, held: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
    """A transaction on `held`, or on a connection of the engine's, committed on exit."""
    if held is None:
        async with db.begin() as conn:
            yield conn
    else:
        async with held.begin():
            yield held
