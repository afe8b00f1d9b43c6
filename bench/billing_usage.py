"""Time billing's reads on a ledger of 10,000 subscribed consumers (a benchmark, not a test).

    .venv/bin/python bench/billing_usage.py [sqlite|postgres ...]

The database holds 10,000 consumers, each subscribed to one plan (two meters, a graduated and a
package charge, two entitlements), half in UTC and half in Europe/Berlin, and the ledger of this
month so far for each on 10 routes: month, week and day rows on every route, and hour and minute rows
(today, this hour, and Berlin's month start in UTC) on one route: about 160,000 rows per day of the
month (1 million on the 6th, 4.7 million on the 30th).
It times, over HTTP through uvicorn as the Admin API serves them (curl: the client does not share
the server's GIL): GET /consumers/{c}/usage and POST /pricing/simulate, then in-process the usage
of all 10,000 consumers at once (what an invoice run reads), and what the subscriptions add to the
configuration snapshot workers receive (and the phase-2 gate's compile and lookup).
PostgreSQL: 127.0.0.1:5432, user postgres, database test (TOLLWAY_TEST_PG_* override), fresh schema.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import PG, free_port, fresh_database  # noqa: E402
from tollway.admin.app import create_app  # noqa: E402
from tollway.billing import plan_store, usage_reads  # noqa: E402
from tollway.billing.daos import SUBSCRIPTIONS  # noqa: E402
from tollway.billing.gate import EntitlementIndex  # noqa: E402
from tollway.billing.ledger_usage import read_many  # noqa: E402
from tollway.billing.subscription_writes import with_timeline  # noqa: E402
from tollway.billing.subscriptions import Timeline  # noqa: E402
from tollway.config import Settings  # noqa: E402
from tollway.metering.periods import bucket_floor, period_start  # noqa: E402
from tollway.store import migrations  # noqa: E402
from tollway.store.db import Database  # noqa: E402
from tollway.store.entities.dao import Dao  # noqa: E402
from tollway.store.snapshot import load_snapshot  # noqa: E402

CONSUMERS = 10_000
ROUTES = 10
SERVICE = "00000000-0000-4000-8000-00000000beef"
BERLIN = ZoneInfo("Europe/Berlin")


def consumer_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def route_id(j: int) -> str:
    return f"00000000-0000-4000-9000-{j:012d}"


def ledger_rows(now: int) -> list[tuple[Any, ...]]:
    """This month so far, per consumer and route, as the flusher leaves it (status 200)."""
    month = bucket_floor(now, "month")
    today = bucket_floor(now, "day")
    first = min(month, period_start(now, "month", BERLIN))  # Berlin's month starts 1 or 2 hours earlier
    rows: list[tuple[Any, ...]] = []

    def add(grain: str, start: int, i: int, j: int, n: int, status: int = 200) -> None:
        rows.append((grain, start, consumer_id(i), SERVICE, route_id(j), status, n, n * 300, n * 2000, n * 12_345))

    for i in range(CONSUMERS):
        for j in range(ROUTES):
            per_day = 1 + (i * 7 + j) % 50
            days = (today - month) // 86_400 + 1
            add("month", month, i, j, per_day * days)
            weeks: dict[int, int] = {}
            for d in range(days):
                add("day", month + d * 86_400, i, j, per_day)
                weeks[bucket_floor(month + d * 86_400, "week")] = weeks.get(bucket_floor(month + d * 86_400,
                                                                                         "week"), 0) + per_day
            for week, n in weeks.items():
                add("week", week, i, j, n)
        for hour in range(first, bucket_floor(now, "hour") + 1, 3600):
            if hour >= today or hour < month:
                add("hour", hour, i, 0, 1 + i % 5)
        for minute in range(bucket_floor(now, "hour"), bucket_floor(now, "minute") + 1, 60):
            add("minute", minute, i, 0, 1)
    return rows


PLAN = [("/meters", {"name": "ok-calls", "status": ["2xx"]}),
        ("/meters", {"name": "egress", "aggregation": "sum", "field": "response_bytes"}),
        ("/plans", {"name": "pro", "currency": "USD", "base_fee": "29", "minimum_commitment": "50"}),
        ("/plans/pro/charges", {"meter": {"name": "ok-calls"}, "model": "graduated", "tiers": [
            {"up_to": 10000, "unit_price": "0"}, {"up_to": 100000, "unit_price": "0.0015", "flat_fee": "1"},
            {"up_to": None, "unit_price": "0.001"}]}),
        ("/plans/pro/charges", {"meter": {"name": "egress"}, "model": "package", "package_size": 1_000_000,
                                "package_price": "0.05"}),
        ("/plans/pro/entitlements", {"meter": {"name": "ok-calls"}, "limit": 5000, "period": "day"}),
        ("/plans/pro/entitlements", {"meter": {"name": "ok-calls"}, "limit": 100000, "period": "billing_period",
                                     "enforcement": "soft"})]


async def subscriptions(db: Database, started: int) -> list[dict[str, Any]]:
    """Every consumer's subscription row, on the plan's version 1, half of them in Berlin."""
    async with db.begin() as conn:
        plan = await plan_store.read_plan(conn, "pro")
        stored, _ = await plan_store.ensure_version(conn, plan)
    dao = Dao(SUBSCRIPTIONS)
    rows = []
    for i in range(CONSUMERS):
        tz = BERLIN if i % 2 else ZoneInfo("UTC")
        timeline = Timeline.start(started, tz, plan["id"], stored.number, stored.version)
        entity = with_timeline({"id": str(uuid.uuid4()), "created_at": started, "updated_at": started, "tags": None,
                                "consumer": {"id": consumer_id(i)}, "tz": tz.key, "external_customer_id": None},
                               timeline, started)
        rows.append(dao.to_row(entity))
    return rows


def load_sqlite(settings: Settings, usage: list[tuple[Any, ...]], consumers: list[tuple[Any, ...]],
                subs: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(settings.database_path)
    usage.sort()
    with conn:
        conn.executemany("INSERT INTO consumers (id, created_at, updated_at, username, custom_id, tags) "
                         "VALUES (?,?,?,?,?,?)", consumers)
        conn.executemany("INSERT INTO billable_usage VALUES (?,?,?,?,?,?,?,?,?,?)", usage)
        columns = list(subs[0])
        conn.executemany(f"INSERT INTO subscriptions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [tuple(row[c] for c in columns) for row in subs])
    conn.execute("ANALYZE")
    conn.close()


async def load_postgres(settings: Settings, usage: list[tuple[Any, ...]], consumers: list[tuple[Any, ...]],
                        subs: list[dict[str, Any]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG["host"], port=PG["port"], user=PG["user"], database=PG["database"],
                                 server_settings={"search_path": settings.pg_schema})
    try:
        await conn.copy_records_to_table("consumers", records=consumers,
                                         columns=["id", "created_at", "updated_at", "username", "custom_id", "tags"])
        await conn.copy_records_to_table("billable_usage", records=usage)
        columns = list(subs[0])
        await conn.copy_records_to_table("subscriptions", records=[tuple(row[c] for c in columns) for row in subs],
                                         columns=columns)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def serve(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    db = Database.from_settings(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


def curl(*args: str) -> tuple[float, bytes]:
    """(seconds, body) of one request by curl."""
    with tempfile.NamedTemporaryFile() as out:
        done = subprocess.run(["curl", "-s", "-f", "-o", out.name, "-w", "%{time_total}", *args],
                              capture_output=True, text=True, check=True)
        return float(done.stdout), Path(out.name).read_bytes()


def summary(label: str, timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    return (f"{label}: median {statistics.median(ms):.1f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms, "
            f"max {ms[-1]:.1f} ms over {len(ms)} requests")


def measure_http(base: str, label: str) -> None:
    timings = []
    for i in range(0, CONSUMERS, CONSUMERS // 50):
        seconds, body = curl(f"{base}/consumers/user{i}/usage")
        timings.append(seconds)
        assert json.loads(body)["meters"][0]["units"] > 0
    print(f"{label}: " + summary("GET /consumers/{c}/usage", timings))
    baseline = [curl(f"{base}/consumers/user{i}")[0] for i in range(0, CONSUMERS, CONSUMERS // 50)]
    print(f"{label}: " + summary("GET /consumers/{c} (the Admin API's floor, for comparison)", baseline))
    timings = []
    for i in range(50):
        body = orjson.dumps({"plan": "pro", "usage": {"ok-calls": 1000 * i * i, "egress": 7_000_000 * i}})
        seconds, _ = curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body.decode(),
                          f"{base}/pricing/simulate")
        timings.append(seconds)
    print(f"{label}: " + summary("POST /pricing/simulate", timings))


async def measure_snapshot(settings: Settings, label: str) -> None:
    """What subscriptions add to the configuration snapshot every worker gets, and the gate's compile."""
    db = Database.from_settings(settings)
    try:
        begin = time.perf_counter()
        snapshot = await load_snapshot(db, settings)
        loaded = time.perf_counter() - begin
    finally:
        await db.dispose()
    size = len(orjson.dumps(snapshot["subscriptions"]))
    begin = time.perf_counter()
    index = EntitlementIndex.compile(snapshot["subscriptions"])
    compiled = time.perf_counter() - begin
    now = int(time.time())
    begin = time.perf_counter()
    for i in range(100_000):
        index.checks(consumer_id(i % CONSUMERS), SERVICE, route_id(0), now)
    per_call = (time.perf_counter() - begin) / 100_000
    print(f"{label}: snapshot with {len(snapshot['subscriptions']):,} subscriptions: loaded in {loaded:.2f} s, "
          f"their part {size / 1e6:.1f} MB of JSON; EntitlementIndex.compile {compiled:.2f} s, "
          f"checks() {per_call * 1e6:.1f} us per call")


async def measure_bulk(settings: Settings, label: str) -> None:
    db = Database.from_settings(settings)
    try:
        for attempt in ("first", "second"):
            now = int(time.time())
            begin = time.perf_counter()
            async with db.connect() as conn:
                readings = await usage_reads.all_readings(conn, now)
                prepared = time.perf_counter()
                wanted = [(item.subscription["consumer"]["id"], item.figures) for item in readings]
                figures = await read_many(conn, settings, wanted, now)
            read = time.perf_counter()
            answers = [item.answer(figures[item.subscription["consumer"]["id"]]) for item in readings]
            done = time.perf_counter()
            assert len(answers) == CONSUMERS and all(a["meters"][0]["units"] > 0 for a in answers)
            total = sum(a["total_minor"] for a in answers)
            print(f"{label}: usage of all {len(answers):,} subscriptions ({attempt} run): {done - begin:.2f} s: "
                  f"subscriptions and versions read {prepared - begin:.2f} s, ledger {read - prepared:.2f} s, "
                  f"priced and shaped {done - read:.2f} s; sum of totals {total / 100:,.2f} USD")
    finally:
        await db.dispose()


def main(databases: list[str]) -> None:
    now = int(time.time())
    begin = time.perf_counter()
    usage = ledger_rows(now)
    consumers = [(consumer_id(i), now, now, f"user{i}", None, None) for i in range(CONSUMERS)]
    print(f"synthetic ledger: {len(usage):,} usage rows for {CONSUMERS:,} consumers "
          f"(built in {time.perf_counter() - begin:.1f} s); now {datetime.fromtimestamp(now, UTC).isoformat()}")
    for database in databases:
        with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), database) as settings:
            asyncio.run(_bootstrap(settings))
            base, server, thread = serve(settings)
            try:
                for path, body in PLAN:
                    curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                         orjson.dumps(body).decode(), base + path)
                subs = asyncio.run(_subscriptions(settings, period_start(now, "month", BERLIN)))
                begin = time.perf_counter()
                if database == "postgres":
                    asyncio.run(load_postgres(settings, usage, consumers, subs))
                else:
                    load_sqlite(settings, list(usage), consumers, subs)
                print(f"{database}: loaded in {time.perf_counter() - begin:.1f} s")
                measure_http(base, database)
                asyncio.run(measure_bulk(settings, database))
                asyncio.run(measure_snapshot(settings, database))
            finally:
                server.should_exit = True
                thread.join(30)


async def _bootstrap(settings: Settings) -> None:
    db = Database.from_settings(settings)
    try:
        await migrations.bootstrap(db, settings)
    finally:
        await db.dispose()


async def _subscriptions(settings: Settings, started: int) -> list[dict[str, Any]]:
    db = Database.from_settings(settings)
    try:
        return await subscriptions(db, started)
    finally:
        await db.dispose()


if __name__ == "__main__":
    main(sys.argv[1:] or ["sqlite", "postgres"])
