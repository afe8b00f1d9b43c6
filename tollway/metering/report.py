"""Usage reports: one SQL statement per report, summed and ordered in the database, shaped here.

`UsageReport.prepare(db, settings, query)` resolves the consumer/service/route filters (ids or
names, through the live tables when they exist and the ledger's last known names), plans the
grain (tollway.metering.plan) and builds the statement; then `page()` answers one page and
`batches()` streams every row from a server-side cursor (CSV exports, never held in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, case, column, func, inspect, null, or_, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.config import Settings
from tollway.errors import NotBootstrapped, StoreUnavailable
from tollway.metering import latency_report
from tollway.metering.ledger import UNAVAILABLE, describe
from tollway.metering.periods import iso
from tollway.metering.plan import Plan, plan
from tollway.metering.query import GROUPS, QueryError, UsageQuery
from tollway.metering.tables import names, rollup, usage
from tollway.store.db import Database

CSV_HEADER = ("period", "period_start", "period_end", "consumer_id", "consumer_username",
              "consumer_custom_id", "service_id", "service_name", "route_id", "route_name", "status",
              "requests", "request_bytes", "response_bytes", "latency_ms_avg")
STREAM_ROWS = 5000
NONE = "-"   # consumer=- (or service=-, route=-): calls without a consumer (service, route)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# The core tables, as far as reports read them (they belong to the store; they may not exist yet).
_LIVE = {
    "consumer": table("consumers", column("id"), column("username"), column("custom_id")),
    "service": table("services", column("id"), column("name")),
    "route": table("routes", column("id"), column("name")),
}
_LIVE_NAME = {"consumer": "username", "service": "name", "route": "name"}
_ID_COLUMN = {"consumer": "consumer_id", "service": "service_id", "route": "route_id"}


@asynccontextmanager
async def _connection(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection; an unreachable database is raised as StoreUnavailable."""
    try:
        async with db.engine.connect() as conn:
            yield conn
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"cannot read usage from the database: {describe(exc)}") from exc


def _tables(conn: Connection) -> tuple[bool, set[str]]:
    """Whether the ledger exists, and which core tables (consumer, service, route) do."""
    inspector = inspect(conn)
    return (inspector.has_table(usage.name),
            {kind for kind, live in _LIVE.items() if inspector.has_table(live.name)})


async def _resolve(conn: AsyncConnection, kind: str, value: str, live: set[str]) -> list[str] | None:
    """The ids `value` (an id or a name) stands for: current entities first, else deleted ones.

    NONE (`-`) always means calls without one (stored as ''), even if an entity were named '-'."""
    if value == NONE:
        return [""]
    if kind in live:
        table_ = _LIVE[kind]
        found = await conn.execute(select(table_.c.id).where(
            or_(table_.c.id == value, table_.c[_LIVE_NAME[kind]] == value)))
        ids = [str(row[0]) for row in found]
        if ids:
            return ids
    found = await conn.execute(select(names.c.id).where(
        names.c.kind == kind, or_(names.c.id == value, names.c.name == value)))
    ids = [row[0] for row in found]
    if ids:
        return ids
    return [value] if _UUID.match(value) else None


@dataclass(frozen=True)
class UsageReport:
    """A prepared report: its query, plan and statement (without paging)."""

    db: Database
    query: UsageQuery
    plan: Plan
    statement: Select[Any]
    filters: dict[str, list[str]]

    @classmethod
    async def prepare(cls, db: Database, settings: Settings, query: UsageQuery) -> UsageReport:
        """Resolve filters and plan; QueryError (listing every problem) when it cannot be answered."""
        problems: dict[str, str] = {}
        try:
            the_plan = plan(query, settings)
        except QueryError as exc:
            problems.update(exc.fields)
        filters: dict[str, list[str]] = {}
        async with _connection(db) as conn:
            ledger_exists, live = await conn.run_sync(_tables)
            if not ledger_exists:
                raise NotBootstrapped("the usage ledger does not exist; run 'tollway migrations up' "
                                      "with the billable plugin enabled")
            for kind in ("consumer", "service", "route"):
                value = getattr(query, kind)
                if value is None:
                    continue
                ids = await _resolve(conn, kind, value, live)
                if ids is None:
                    problems[kind] = f"no {kind} with id or name '{value}'"
                else:
                    filters[kind] = ids
        if problems:
            raise QueryError(problems)
        return cls(db, query, the_plan, _statement(query, the_plan, filters, live), filters)

    def _shape(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        tz, ends = self.query.tz, self.plan.ends
        out = []
        for (pstart, c_id, c_name, c_custom, s_id, s_name, r_id, r_name, status,
             requests, request_bytes, response_bytes, latency) in rows:
            out.append({
                "period_start": iso(pstart, tz),
                "period_end": iso(ends[pstart], tz),
                "consumer": {"id": c_id, "username": c_name, "custom_id": c_custom} if c_id else None,
                "service": {"id": s_id, "name": s_name} if s_id else None,
                "route": {"id": r_id, "name": r_name} if r_id else None,
                "status": status,
                "requests": int(requests),
                "request_bytes": int(request_bytes),
                "response_bytes": int(response_bytes),
                "latency_ms_avg": round(int(latency) / int(requests) / 1000, 3),
            })
        return out

    async def page(self) -> tuple[list[dict[str, Any]], int | None]:
        """One page of `query.size` rows from `query.offset`; and the next page's offset, or None."""
        size, offset = self.query.size, self.query.offset
        async with _connection(self.db) as conn:
            rows = (await conn.execute(self.statement.limit(size + 1).offset(offset))).all()
            shaped = self._shape(rows[:size])
            await latency_report.attach(conn, self.query, self.plan, self.filters, shaped,
                                        [row[0] for row in rows[:size]])
        more = len(rows) > size
        return shaped, offset + size if more else None

    async def calls_by(self, kind: str) -> dict[str, int]:
        """Calls per id of `kind` (grouped by) over the whole report, summed in the database, unnamed."""
        statement = calls_statement(self.query, self.plan, self.filters, kind)
        async with _connection(self.db) as conn:
            return {str(ident): int(calls) for ident, calls in await conn.execute(statement)}

    async def batches(self) -> AsyncIterator[Sequence[Any]]:
        """Every row of the report, in order, in batches of STREAM_ROWS rows.

        Read through the driver itself (asyncpg: a server-side cursor; aiosqlite: its cursor), not
        SQLAlchemy's result layer, which costs more per row than everything else here; the next
        batch is fetched while the caller works on this one.
        """
        async with _connection(self.db) as conn:
            compiled = self.statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            params = [compiled.params[name] for name in compiled.positiontup or ()]
            raw: Any = (await conn.get_raw_connection()).driver_connection
            try:
                if conn.dialect.name == "postgresql":
                    async with raw.transaction(isolation="repeatable_read", readonly=True):
                        cursor = await raw.cursor(str(compiled), *params)
                        async for batch in _prefetched(cursor.fetch, STREAM_ROWS):
                            yield batch
                else:
                    cursor = await raw.execute(str(compiled), params)
                    try:
                        async for batch in _prefetched(cursor.fetchmany, STREAM_ROWS):
                            yield batch
                    finally:
                        await cursor.close()
            except UNAVAILABLE as exc:
                raise StoreUnavailable(f"cannot read usage from the database: {describe(exc)}") from exc

    async def rows(self) -> AsyncIterator[dict[str, Any]]:
        """Every row of the report as the JSON API shapes it."""
        async for batch in self.batches():
            for row in self._shape(batch):
                yield row

    async def csv_chunks(self) -> AsyncIterator[bytes]:
        """The whole report as CSV (RFC 4180, header first), in chunks of encoded bytes."""
        period, tz, ends = _csv_field(self.query.period), self.query.tz, self.plan.ends
        yield (",".join(CSV_HEADER) + "\n").encode()
        labels: dict[int, str] = {}
        field = _csv_field
        async for batch in self.batches():
            lines: list[str] = []
            append = lines.append
            for (pstart, c_id, c_name, c_custom, s_id, s_name, r_id, r_name, status,
                 requests, request_bytes, response_bytes, latency) in batch:
                label = labels.get(pstart)
                if label is None:
                    label = labels[pstart] = f"{period},{iso(pstart, tz)},{iso(ends[pstart], tz)}"
                # Names rarely need quoting: check the seven text fields at once, quote one by one if so.
                text = (f"{c_id or ''},{c_name or ''},{c_custom or ''},{s_id or ''},{s_name or ''},"
                        f"{r_id or ''},{r_name or ''}")
                if text.count(",") != 6 or '"' in text or "\n" in text or "\r" in text:
                    text = ",".join(map(field, (c_id, c_name, c_custom, s_id, s_name, r_id, r_name)))
                append(f"{label},{text},{'' if status is None else status},{requests},{request_bytes},"
                       f"{response_bytes},{round(int(latency) / int(requests) / 1000, 3)}\n")
            yield "".join(lines).encode()


async def _prefetched(fetch: Callable[[int], Awaitable[Sequence[Any]]], size: int) -> AsyncIterator[Sequence[Any]]:
    """Batches from `fetch(size)` until an empty one, each fetched while the previous is being used."""
    pending = asyncio.ensure_future(fetch(size))
    try:
        while True:
            batch = await pending
            if not batch:
                return
            pending = asyncio.ensure_future(fetch(size))
            yield batch
    finally:
        if not pending.done():
            # The driver allows one operation at a time: let it finish before the cursor is closed.
            with contextlib.suppress(Exception):
                await pending


def _csv_field(value: str | None) -> str:
    """A text value as a CSV field: quoted (quotes doubled) only when it must be."""
    if not value:
        return ""
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def source_table(query: UsageQuery, filters: dict[str, list[str]]) -> Any:
    """The table a report reads: the rollup without the consumer (a row per route and status, the
    sum over consumers) unless the report groups or filters by consumer, then the ledger itself."""
    return usage if "consumer" in query.group_by or "consumer" in filters else rollup


def calls_statement(query: UsageQuery, the_plan: Plan, filters: dict[str, list[str]], kind: str) -> Select[Any]:
    """SELECT id, calls per `kind` (grouped by in `query`) summed over every period of the report,
    without names: what a ranking reads before naming the few it shows."""
    grouped = _grouped(query, the_plan, filters, summed=False)
    # The same ids (never NULL), as an expression: grouped by the column, SQLite would read the
    # range through the consumer index (a skip-scan of every consumer, four times slower here
    # than the primary key's range).
    key = func.coalesce(grouped.c[_ID_COLUMN[kind]], "")
    return select(key, func.sum(grouped.c.requests)).group_by(key)


def _grouped(query: UsageQuery, the_plan: Plan, filters: dict[str, list[str]], summed: bool = True) -> Any:
    """The report's rows without names, as a subquery: period, dimensions, sums. Not `summed`: the
    rows read (and those subtracted, negated) before they are summed per period and key, which
    add up to the same totals per key (where the ledger rows are the report's rows already, those)."""
    t = source_table(query, filters)  # the ledger, or its rollup without the consumer
    conditions: list[Any] = []
    for kind, ids in filters.items():
        conditions.append(t.c[_ID_COLUMN[kind]].in_(ids))
    if query.status is not None:
        conditions.append(and_(t.c.status >= query.status.lo, t.c.status < query.status.hi))
    base = [t.c.grain == the_plan.grain, t.c.bucket_start >= the_plan.lo, *conditions]
    if the_plan.hi is not None:
        base.append(t.c.bucket_start < the_plan.hi)

    dimensions = [t.c[_ID_COLUMN[kind]] for kind in ("consumer", "service", "route") if kind in query.group_by]
    if "status" in query.group_by:
        dimensions.append(t.c.status)
    sums = [t.c.requests, t.c.request_bytes, t.c.response_bytes, t.c.latency_us_sum]
    pstart = the_plan.period_of(t.c.bucket_start).label("pstart")
    minus: Any = None
    if the_plan.minus_grain is not None:
        # The finer rows outside the range, summed per period and key: subtracted below.
        outside = or_(*(and_(t.c.bucket_start >= a, t.c.bucket_start < b) for a, b in the_plan.minus))
        outside_rows = select(the_plan.period_of(t.c.bucket_start, the_plan.minus_grain).label("pstart"),
                        *dimensions, *sums).where(
            t.c.grain == the_plan.minus_grain, outside, *conditions).subquery("outside")
        keys = [outside_rows.c.pstart, *(outside_rows.c[d.name] for d in dimensions)]
        minus = select(*keys, *(func.sum(outside_rows.c[c.name]).label(c.name) for c in sums)).group_by(*keys) \
            .subquery("minus")
    if the_plan.identity and len(query.group_by) == len(GROUPS):
        # Each ledger row is already one report row (its key is the primary key): no grouping, and
        # the primary key's order is the report's, so a page is read straight off the index.
        rows = select(pstart, *dimensions, *sums).where(*base).subquery("rows")
        if minus is None:
            grouped = select(rows.c.pstart, *(rows.c[d.name] for d in dimensions), rows.c.requests,
                             rows.c.request_bytes, rows.c.response_bytes,
                             rows.c.latency_us_sum.label("latency")).subquery("grouped")
        else:
            joined = rows.outerjoin(minus, and_(minus.c.pstart == rows.c.pstart,
                                                *(minus.c[d.name] == rows.c[d.name] for d in dimensions)))
            net = {c.name: rows.c[c.name] - func.coalesce(minus.c[c.name], 0) for c in sums}
            grouped = select(rows.c.pstart, *(rows.c[d.name] for d in dimensions),
                             net["requests"].label("requests"), net["request_bytes"].label("request_bytes"),
                             net["response_bytes"].label("response_bytes"),
                             net["latency_us_sum"].label("latency")).select_from(joined) \
                .where(net["requests"] > 0).subquery("grouped")
    else:
        mapped: Any = select(pstart, *dimensions, *sums).where(*base)
        if minus is not None:
            mapped = mapped.union_all(select(minus.c.pstart, *(minus.c[d.name] for d in dimensions),
                                             *(-minus.c[c.name] for c in sums)))
        flat = mapped.subquery("mapped")
        if not summed:
            return flat
        keys = [flat.c.pstart, *(flat.c[d.name] for d in dimensions)]
        grouped_select = select(*keys, func.sum(flat.c.requests).label("requests"),
                                func.sum(flat.c.request_bytes).label("request_bytes"),
                                func.sum(flat.c.response_bytes).label("response_bytes"),
                                func.sum(flat.c.latency_us_sum).label("latency")).group_by(*keys)
        if minus is not None:
            grouped_select = grouped_select.having(func.sum(flat.c.requests) > 0)  # nothing left inside the range
        grouped = grouped_select.subquery("grouped")
    return grouped


def _statement(query: UsageQuery, the_plan: Plan, filters: dict[str, list[str]], live: set[str]) -> Select[Any]:
    """SELECT period, dimensions (with names), sums ... GROUP BY period, dimensions ORDER BY the same."""
    grouped = _grouped(query, the_plan, filters)
    dimensions = [grouped.c[_ID_COLUMN[kind]] for kind in ("consumer", "service", "route") if kind in query.group_by]
    if "status" in query.group_by:
        dimensions.append(grouped.c.status)
    source: Any = grouped
    columns: list[Any] = [grouped.c.pstart]
    for kind in ("consumer", "service", "route"):
        id_name = f"{kind}_id"
        if kind not in query.group_by:
            columns += [null(), null()] + ([null()] if kind == "consumer" else [])
            continue
        known = names.alias(f"known_{kind}")
        source = source.outerjoin(known, and_(known.c.kind == kind, known.c.id == grouped.c[id_name]))
        name_col: Any = known.c.name
        custom_col: Any = known.c.custom_id
        if kind in live:
            current = _LIVE[kind].alias(f"live_{kind}")
            source = source.outerjoin(current, current.c.id == grouped.c[id_name])
            name_col = case((current.c.id.is_not(None), current.c[_LIVE_NAME[kind]]), else_=known.c.name)
            if kind == "consumer":
                custom_col = case((current.c.id.is_not(None), current.c.custom_id), else_=known.c.custom_id)
        columns += [grouped.c[id_name], name_col] + ([custom_col] if kind == "consumer" else [])
    columns.append(grouped.c.status if "status" in query.group_by else null())
    columns += [grouped.c.requests, grouped.c.request_bytes, grouped.c.response_bytes, grouped.c.latency]
    order = [grouped.c.pstart, *dimensions]
    return select(*columns).select_from(source).order_by(*order)
