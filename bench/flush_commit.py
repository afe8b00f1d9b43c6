"""What the rollup without the consumer adds to a flush's commit: the ledger's upserts alone,
against the ledger's and the rollup's (ledger.add_usage), on SQLite and PostgreSQL.

    .venv/bin/python bench/flush_commit.py [--lines 40000] [--shape "1,000 clients at random"] [--runs 9]

One batch of --lines spool lines from the worker's own encoder (bench/flusher_lines.py's shapes;
40,000 lines is a second at 40,000 calls/s, in one minute) is summed by UsageBatch into its usage
rows of every grain; each run commits them in one transaction, onto the rows of the runs before
(the upserts of consecutive flushes in one minute), alternating the two variants. Prints the
median milliseconds per commit of each, and the rows each writes. PostgreSQL: 127.0.0.1:5432,
user postgres, database test, a fresh schema (skipped when unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.flusher_lines import CHUNK, SHAPES, lines_for  # noqa: E402
from tests.conftest import PG, _pg_exec, _pg_reachable, make_settings  # noqa: E402
from tollway.metering import ledger  # noqa: E402
from tollway.metering.aggregate import UsageBatch  # noqa: E402
from tollway.metering.tables import usage  # noqa: E402
from tollway.store import migrations  # noqa: E402
from tollway.store.db import Database  # noqa: E402


async def ledger_only(conn: Any, rows: list[dict[str, Any]]) -> None:
    """The commit before the rollup: the ledger's upserts."""
    await ledger._add_sums(conn, usage, ledger._USAGE_KEY, rows)


async def timed(db: Database, write: Callable[[Any, list[dict[str, Any]]], Awaitable[None]],
                rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    async with db.begin() as conn:
        await write(conn, rows)
    return time.perf_counter() - started


async def measure(settings: Any, rows: list[dict[str, Any]], runs: int) -> dict[str, float]:
    db = Database.from_settings(settings)
    try:
        await migrations.bootstrap(db, settings)
        await timed(db, ledger.add_usage, rows)  # the rows exist: every later run updates them
        times: dict[str, list[float]] = {"ledger only": [], "ledger and rollup": []}
        for _ in range(runs):
            times["ledger only"].append(await timed(db, ledger_only, rows))
            times["ledger and rollup"].append(await timed(db, ledger.add_usage, rows))
        return {name: round(statistics.median(values) * 1000, 1) for name, values in times.items()}
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=40_000)
    parser.add_argument("--shape", choices=list(SHAPES), default="1,000 clients at random")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    lines = lines_for(args.shape, args.lines)
    batch = UsageBatch()
    for start in range(0, len(lines), CHUNK):
        batch.add_lines(lines[start:start + CHUNK])
    rows = batch.usage_rows()
    started = time.perf_counter()
    rollup = ledger.rollup_rows(rows)
    print(f"{args.lines:,} lines ({args.shape}): {len(rows):,} ledger rows, {len(rollup):,} rollup rows "
          f"(summed in {(time.perf_counter() - started) * 1000:.1f} ms)")
    with tempfile.TemporaryDirectory() as tmp:
        print("sqlite: median ms per commit", asyncio.run(measure(make_settings(Path(tmp), "sqlite"), rows, args.runs)))
        if not _pg_reachable():
            print("postgres: unreachable, skipped")
            return
        schema = "bench_" + uuid.uuid4().hex[:12]
        asyncio.run(_pg_exec(f'CREATE SCHEMA "{schema}"'))
        try:
            settings = make_settings(Path(tmp) / "pg", "postgres", pg_schema=schema)
            print(f"postgres ({PG['host']}): median ms per commit", asyncio.run(measure(settings, rows, args.runs)))
        finally:
            asyncio.run(_pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
