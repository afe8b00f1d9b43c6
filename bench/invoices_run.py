"""Time the billing run on 10,000 subscriptions with 3 charges each (a benchmark, not a test).

    .venv/bin/python bench/invoices_run.py [sqlite|postgres ...] [--subscriptions N]

The database holds N consumers (10,000 by default), each subscribed since 1 November 2026 to one
plan with a base fee, a minimum commitment and three charges (graduated calls, packaged egress,
standard ingress), half in UTC and half in Europe/Berlin; and November's ledger as the flusher
leaves it: day, week and month rows on 28 days of the month. The run is timed at a fixed clock:
on 1 December 00:30 UTC (every November period has ended: N drafts written), then at 02:00 (the
grace period is over: N invoices refreshed and finalized, each in its own transaction), then once
more (nothing left to do). Totals are checked against an independent sum of the lines.
PostgreSQL: 127.0.0.1:5432, user postgres, database test (TOLLWAY_TEST_PG_* override), fresh schema.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.billing_usage import (  # noqa: E402
    SERVICE,
    _bootstrap,
    consumer_id,
    curl,
    load_postgres,
    load_sqlite,
    route_id,
    serve,
    subscriptions,
)
from tests.conftest import fresh_database  # noqa: E402
from tollway.billing import invoice_run  # noqa: E402
from tollway.config import Settings  # noqa: E402
from tollway.metering.periods import bucket_floor  # noqa: E402
from tollway.store.db import Database  # noqa: E402

NOVEMBER = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
STARTED = NOVEMBER   # 01:00 in Berlin: its first local day is still 1 November, the whole month is billed
DRAFTS_AT = int(datetime(2026, 12, 1, 0, 30, tzinfo=UTC).timestamp())
FINAL_AT = int(datetime(2026, 12, 1, 2, tzinfo=UTC).timestamp())

PLAN = [("/meters", {"name": "calls", "status": ["2xx"]}),
        ("/meters", {"name": "egress", "aggregation": "sum", "field": "response_bytes"}),
        ("/meters", {"name": "ingress", "aggregation": "sum", "field": "request_bytes"}),
        ("/plans", {"name": "pro", "currency": "USD", "base_fee": "29", "minimum_commitment": "50"}),
        ("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "graduated", "tiers": [
            {"up_to": 10000, "unit_price": "0"}, {"up_to": 100000, "unit_price": "0.0015", "flat_fee": "1"},
            {"up_to": None, "unit_price": "0.001"}]}),
        ("/plans/pro/charges", {"meter": {"name": "egress"}, "model": "package", "package_size": 1_000_000,
                                "package_price": "0.05"}),
        ("/plans/pro/charges", {"meter": {"name": "ingress"}, "model": "standard", "unit_price": "0.0000001"})]


def ledger_rows(count: int) -> list[tuple[Any, ...]]:
    """November 2-29 at noon UTC for each consumer: day rows, and the week and month rows they add up to."""
    rows: list[tuple[Any, ...]] = []
    for i in range(count):
        weeks: dict[int, int] = {}
        month = 0
        for day in range(1, 29):
            n = 100 + (i * 7 + day * 13) % 900
            start = NOVEMBER + day * 86_400
            rows.append(("day", start, consumer_id(i), SERVICE, route_id(0), 200, n, n * 300, n * 2000, n * 1000))
            weeks[bucket_floor(start, "week")] = weeks.get(bucket_floor(start, "week"), 0) + n
            month += n
        for week, n in weeks.items():
            rows.append(("week", week, consumer_id(i), SERVICE, route_id(0), 200, n, n * 300, n * 2000, n * 1000))
        rows.append(("month", NOVEMBER, consumer_id(i), SERVICE, route_id(0), 200, month, month * 300, month * 2000,
                     month * 1000))
    return rows


async def timed_runs(settings: Settings, label: str, count: int) -> None:
    db = Database.from_settings(settings)
    try:
        for name, at in (("drafts", DRAFTS_AT), ("finalize", FINAL_AT), ("again", FINAL_AT + 60)):
            begin = time.perf_counter()
            done = await invoice_run.run(db, settings, lambda at=at: at)  # type: ignore[misc]
            took = time.perf_counter() - begin
            print(f"{label}: run '{name}': {took:.1f} s ({len(done.created):,} created, {len(done.refreshed):,} "
                  f"refreshed, {len(done.finalized):,} finalized, {len(done.failed)} failed)", flush=True)
        async with db.connect() as conn:
            from sqlalchemy import text

            checked = (await conn.execute(text(
                "SELECT count(*), sum(total_minor), count(DISTINCT number) FROM invoices WHERE status = 'finalized'"))
            ).one()
            lines = (await conn.execute(text("SELECT count(*), sum(amount_minor) FROM invoice_lines"))).one()
        print(f"{label}: {checked[0]:,} finalized invoices, {checked[2]:,} numbers, total {checked[1]:,} cents; "
              f"{lines[0]:,} lines summing to {lines[1]:,} cents", flush=True)
        # each subscription's opening invoice (November's base fee) and the one issued on 1 December
        assert checked[0] == 2 * count and checked[2] == 2 * count and checked[1] == lines[1]
    finally:
        await db.dispose()


def main(databases: list[str], count: int) -> None:
    usage = ledger_rows(count)
    consumers = [(consumer_id(i), STARTED, STARTED, f"user{i}", None, None) for i in range(count)]
    print(f"synthetic ledger: {len(usage):,} usage rows for {count:,} subscriptions (3 charges each)", flush=True)
    for database in databases:
        with tempfile.TemporaryDirectory() as tmp, fresh_database(Path(tmp), database) as settings:
            asyncio.run(_bootstrap(settings))
            base, server, thread = serve(settings)
            try:
                for path, body in PLAN:
                    curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                         orjson.dumps(body).decode(), base + path)
            finally:
                server.should_exit = True
                thread.join(30)
            subs = asyncio.run(_subscriptions(settings, count))
            begin = time.perf_counter()
            if database == "postgres":
                asyncio.run(load_postgres(settings, usage, consumers, subs))
            else:
                load_sqlite(settings, list(usage), consumers, subs)
            print(f"{database}: loaded in {time.perf_counter() - begin:.1f} s", flush=True)
            asyncio.run(timed_runs(settings, database, count))


async def _subscriptions(settings: Settings, count: int) -> list[dict[str, Any]]:
    """`count` subscriptions from 1 November 00:00 UTC, half of them in Berlin."""
    db = Database.from_settings(settings)
    try:
        rows = await subscriptions(db, STARTED)
    finally:
        await db.dispose()
    return rows[:count]


if __name__ == "__main__":
    args = sys.argv[1:]
    size = 10_000
    if "--subscriptions" in args:
        at = args.index("--subscriptions")
        size = int(args[at + 1])
        del args[at:at + 2]
    main(args or ["sqlite", "postgres"], size)
