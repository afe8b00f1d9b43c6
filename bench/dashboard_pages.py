"""Time the dashboard's pages on SQLite over a month of 10,000 consumers (a benchmark, not a test).

    .venv/bin/python bench/dashboard_pages.py [--consumers N] [--routes N] [--runs N]

The database holds N consumers (10,000), each subscribed to bench/billing_usage.py's plan (two
meters, two entitlements), and the ledger of the last 30 days as the flusher leaves it: per
consumer and route (3), a day row for each of the 30 days, the week and month rows that hold them,
one consumer in ten with 404s too, hour rows of the last day and minute rows of the last hour on
one route; latency histograms per route beside them.
It times, over HTTP through uvicorn as the Admin API serves them (curl, another process), each page
and live partial: the overview for the last hour, day and 30 days, a consumer page, the plans page.
The first overview of a span reads its settled days (tollway/dashboard/overview.py), the others
only what is still live: the first request's time is printed apart.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import billing_usage as base  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tollway.metering.latency import bucket_of  # noqa: E402
from tollway.metering.periods import bucket_floor  # noqa: E402
from tollway.metering.tables import ROLLUP_FROM_LEDGER  # noqa: E402

DAY = 86_400


def ledger_rows(now: int, consumers: int, routes: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(usage rows, latency rows) of the last 30 days, every grain consistent with the others."""
    today = bucket_floor(now, "day")
    days = [today - d * DAY for d in range(30, -1, -1)]
    usage: dict[tuple[Any, ...], list[int]] = {}
    latency: dict[tuple[Any, ...], int] = {}

    def add(grain: str, start: int, i: int, j: int, status: int, n: int) -> None:
        key = (grain, start, base.consumer_id(i), base.SERVICE, base.route_id(j), status)
        row = usage.setdefault(key, [0, 0, 0, 0])
        row[0] += n
        row[1] += n * 300
        row[2] += n * 2000
        row[3] += n * (800 + 400 * j)
        bucket = bucket_of(800 + 400 * j)
        lkey = (grain, start, base.SERVICE, base.route_id(j), bucket)
        latency[lkey] = latency.get(lkey, 0) + n

    def everywhere(start: int, i: int, j: int, status: int, n: int) -> None:
        add("day", start, i, j, status, n)
        add("week", bucket_floor(start, "week"), i, j, status, n)
        add("month", bucket_floor(start, "month"), i, j, status, n)

    for i in range(consumers):
        for j in range(routes):
            for day in days:
                everywhere(day, i, j, 200, 1 + (i * 7 + j) % 50)
                if i % 10 == 0 and j == 0:
                    everywhere(day, i, j, 404, 1)
        for hour in range(today, bucket_floor(now, "hour") + 1, 3600):
            add("hour", hour, i, 0, 200, 1 + i % 5)
        for minute in range(bucket_floor(now, "hour"), bucket_floor(now, "minute") + 1, 60):
            add("minute", minute, i, 0, 200, 1)
    return ([(*key, *values) for key, values in usage.items()],
            [(*key, calls) for key, calls in latency.items()])


def load(settings: Any, usage: list[tuple[Any, ...]], latency: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(settings.database_path)
    usage.sort()
    latency.sort()
    with conn:
        conn.executemany("INSERT INTO billable_usage VALUES (?,?,?,?,?,?,?,?,?,?)", usage)
        conn.executemany("INSERT INTO billable_latency VALUES (?,?,?,?,?,?)", latency)
    begin = time.perf_counter()
    with conn:  # the rollup without the consumer, as migration 003_route_rollup builds it from the ledger
        conn.execute(ROLLUP_FROM_LEDGER)
    print(f"sqlite: the rollup built from the ledger in {time.perf_counter() - begin:.1f} s (the migration's work)")
    conn.execute("ANALYZE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--consumers", type=int, default=10_000)
    parser.add_argument("--routes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    base.CONSUMERS = args.consumers
    now = int(time.time())
    begin = time.perf_counter()
    usage, latency = ledger_rows(now, args.consumers, args.routes)
    print(f"synthetic ledger: {len(usage):,} usage rows and {len(latency):,} latency rows for "
          f"{args.consumers:,} consumers on {args.routes} routes, the last 30 days "
          f"(built in {time.perf_counter() - begin:.1f} s); now {datetime.fromtimestamp(now, UTC).isoformat()}")
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), "sqlite")
        asyncio.run(base._bootstrap(settings))
        url, server, thread = base.serve(settings)
        try:
            for path, body in base.PLAN:
                base.curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                          orjson.dumps(body).decode(), url + path)
            consumers = [(base.consumer_id(i), now, now, f"user{i}", None, None) for i in range(args.consumers)]
            subs = asyncio.run(base._subscriptions(settings, bucket_floor(now - 30 * DAY, "day")))
            begin = time.perf_counter()
            _load_core(settings, consumers, subs)
            load(settings, usage, latency)
            print(f"sqlite: loaded in {time.perf_counter() - begin:.1f} s "
                  f"({Path(settings.database_path).stat().st_size / 1e6:.0f} MB)")
            one = f"user{args.consumers // 2}"
            pages = [("overview, last 30 days", "/dashboard?span=month"),
                     ("overview partial, last 30 days", "/dashboard/partials/overview?span=month"),
                     ("overview, last 24 hours", "/dashboard?span=day"),
                     ("overview, last hour", "/dashboard?span=hour"),
                     ("consumer page, last 30 days", f"/dashboard/consumers/{one}?span=month"),
                     ("consumer partial, last 30 days", f"/dashboard/partials/consumers/{one}?span=month"),
                     ("plans page", "/dashboard/plans")]
            for label, path in pages:
                timings = []
                for _ in range(args.runs):
                    seconds, body = base.curl(url + path)
                    timings.append(seconds)
                assert b"data-figure" in body or b"plan" in body
                print("sqlite: " + base.summary(f"{label} (GET {path})", timings)
                      + f"; the first {timings[0] * 1000:.1f} ms")
        finally:
            server.should_exit = True
            thread.join(30)


def _load_core(settings: Any, consumers: list[tuple[Any, ...]], subs: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(settings.database_path)
    with conn:
        conn.executemany("INSERT INTO consumers (id, created_at, updated_at, username, custom_id, tags) "
                         "VALUES (?,?,?,?,?,?)", consumers)
        columns = list(subs[0])
        conn.executemany(f"INSERT INTO subscriptions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [tuple(row[c] for c in columns) for row in subs])
    conn.close()


if __name__ == "__main__":
    main()
