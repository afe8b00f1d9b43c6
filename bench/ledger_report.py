"""Time GET /billable on a synthetic ledger: 10,000 consumers x 10 routes x one month.

    .venv/bin/python bench/ledger_report.py [sqlite|postgres ...]

The ledger holds what a month of that traffic leaves (status 200 only): 100,000 month rows,
500,000 week rows (the five ISO weeks touching September 2026) and 3,000,000 day rows.
It times /billable?period=month as JSON (one page; target < 1 s) and the
whole month as CSV (target >= 50,000 rows/s), over HTTP through uvicorn, as the Admin API serves it.
PostgreSQL: 127.0.0.1:5432, user postgres, database test (TOLLWAY_TEST_PG_* override), fresh schema.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import PG, free_port, fresh_database  # noqa: E402
from tollway.config import Settings  # noqa: E402
from tollway.metering.periods import bucket_floor  # noqa: E402
from tollway.metering.tables import ROLLUP_FROM_LEDGER  # noqa: E402
from tollway.plugins.billable.api import routes  # noqa: E402
from tollway.store.db import Database  # noqa: E402

CONSUMERS = 10_000
ROUTES = 10
DAYS = 30
MONTH = datetime(2026, 9, 1, tzinfo=UTC)
NEWLINE = b"\n"
SERVICE = "00000000-0000-4000-8000-00000000beef"
migration = importlib.import_module("tollway.metering.migrations.000_base")


def consumer_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def route_id(j: int) -> str:
    return f"00000000-0000-4000-9000-{j:012d}"


def ledger_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    month = int(MONTH.timestamp())
    usage: list[tuple[Any, ...]] = []
    names: list[tuple[Any, ...]] = []
    for i in range(CONSUMERS):
        names.append(("consumer", consumer_id(i), f"user{i}", f"cust{i}", 0))
        for j in range(ROUTES):
            requests = 1 + (i * 7 + j) % 50
            usage.append(("month", month, consumer_id(i), SERVICE, route_id(j), 200, requests * DAYS,
                          requests * DAYS * 300, requests * DAYS * 2000, requests * DAYS * 12_345))
            weeks: dict[int, int] = {}
            for d in range(DAYS):
                day = month + d * 86_400
                usage.append(("day", day, consumer_id(i), SERVICE, route_id(j), 200, requests,
                              requests * 300, requests * 2000, requests * 12_345))
                weeks[bucket_floor(day, "week")] = weeks.get(bucket_floor(day, "week"), 0) + 1
            for week, days in weeks.items():
                n = requests * days
                usage.append(("week", week, consumer_id(i), SERVICE, route_id(j), 200, n, n * 300, n * 2000,
                              n * 12_345))
    names += [("route", route_id(j), f"route{j}", None, 0) for j in range(ROUTES)]
    names.append(("service", SERVICE, "svc", None, 0))
    return usage, names


async def create_ledger(settings: Settings) -> None:
    db = Database.from_settings(settings)
    async with db.engine.begin() as conn:
        await conn.run_sync(migration.up)
    await db.dispose()


async def load_postgres(settings: Settings, usage: list[tuple[Any, ...]], names: list[tuple[Any, ...]]) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG["host"], port=PG["port"], user=PG["user"], database=PG["database"],
                                 server_settings={"search_path": settings.pg_schema})
    try:
        await conn.copy_records_to_table("billable_usage", records=usage)
        await conn.copy_records_to_table("billable_names", records=names)
        await conn.execute(ROLLUP_FROM_LEDGER)  # the rollup without the consumer, as the flusher keeps it
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def load_sqlite(settings: Settings, usage: list[tuple[Any, ...]], names: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(settings.database_path)
    usage.sort()  # the primary key's order: a WITHOUT ROWID table fills fastest in it
    with conn:
        conn.executemany("INSERT INTO billable_usage VALUES (?,?,?,?,?,?,?,?,?,?)", usage)
        conn.executemany("INSERT INTO billable_names VALUES (?,?,?,?,?)", names)
        conn.execute(ROLLUP_FROM_LEDGER)  # the rollup without the consumer, as the flusher keeps it
    conn.execute("ANALYZE")
    conn.close()


@dataclass
class Ctx:
    db: Database
    settings: Settings


def serve(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    db = Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await db.dispose()

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes(Ctx(db, settings)), lifespan=lifespan),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


def fetch(url: str) -> tuple[float, bytes]:
    """(seconds, body) of one GET by curl: the client must not share the server's GIL."""
    with tempfile.NamedTemporaryFile() as out:
        done = subprocess.run(["curl", "-s", "-f", "-o", out.name, "-w", "%{time_total}", url],
                              capture_output=True, text=True, check=True)
        return float(done.stdout), Path(out.name).read_bytes()


def measure(base: str, label: str) -> None:
    month = f"{base}/billable?period=month&start=2026-09-01&end=2026-10-01"
    timings = []
    for _ in range(3):
        seconds, body = fetch(month)
        timings.append(seconds)
        assert len(json.loads(body)["data"]) == 100
    print(f"{label}: /billable?period=month JSON (page of 100 of 100,000 rows): "
          f"first {timings[0] * 1000:.0f} ms, best {min(timings) * 1000:.0f} ms")
    for _ in range(2):
        seconds, body = fetch(month + "&csv=true")
        rows = body.count(b"\n") - 1
        print(f"{label}: month CSV export: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s")
    seconds, body = fetch(month + "&consumer=user4242")
    assert sum(r["requests"] for r in json.loads(body)["data"]) > 0
    print(f"{label}: /billable?period=month&consumer=user4242: {seconds * 1000:.0f} ms")
    seconds, body = fetch(month.replace("period=month", "period=week"))
    print(f"{label}: /billable?period=week JSON (week rows, minus the days outside the range): "
          f"{seconds * 1000:.0f} ms")
    seconds, body = fetch(month.replace("period=month", "period=week") + "&csv=true")
    print(f"{label}: period=week CSV export: {body.count(NEWLINE) - 1:,} rows in {seconds:.2f} s")
    seconds, body = fetch(month.replace("period=month", "period=year"))
    print(f"{label}: /billable?period=year JSON (month rows): {seconds * 1000:.0f} ms")


def measure_cli(settings: Settings, label: str) -> None:
    """`tollway report` straight from the database, as a table and as CSV (what a stopped node offers)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLWAY_")}
    env.update({"TOLLWAY_" + key.upper(): str(value) for key, value in settings.to_dict().items()
                if key != "config_file"})
    for extra in ([], ["--csv"]):
        begin = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tollway", "report", "--period", "month", "--start",
                               "2026-09-01", "--end", "2026-10-01", *extra],
                              env=env, capture_output=True, check=True)
        seconds = time.perf_counter() - begin
        rows = done.stdout.count(NEWLINE) - 1
        what = "CSV" if extra else "table"
        print(f"{label}: tollway report --period month ({what}): {rows:,} rows in {seconds:.2f} s "
              f"(process start included)")


def main(databases: list[str]) -> None:
    begin = time.perf_counter()
    usage, names = ledger_rows()
    print(f"synthetic ledger: {len(usage):,} usage rows, {len(names):,} names "
          f"(built in {time.perf_counter() - begin:.1f} s)")
    for database in databases:
        with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), database) as settings:
            asyncio.run(create_ledger(settings))
            begin = time.perf_counter()
            if database == "postgres":
                asyncio.run(load_postgres(settings, usage, names))
            else:
                load_sqlite(settings, list(usage), names)
            print(f"{database}: loaded in {time.perf_counter() - begin:.1f} s")
            base, server, thread = serve(settings)
            try:
                measure(base, database)
                measure_cli(settings, database)
            finally:
                server.should_exit = True
                thread.join(30)


if __name__ == "__main__":
    main(sys.argv[1:] or ["sqlite", "postgres"])
