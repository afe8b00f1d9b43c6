#!/usr/bin/env python3
"""What metering costs the database: one node on PostgreSQL under full wrk load.

    .venv/bin/python bench/flush_cost.py [--duration 15] [--consumers 4] [--workers 2]

It starts nginx (`return 200`) as the upstream and a Tollway node with key-auth and billable on a
fresh PostgreSQL database (127.0.0.1:5432, user postgres), drives it with wrk spreading requests
over several consumers' keys, and reads PostgreSQL's own counters (pg_stat_database) before and
after: transactions and rows written per second, against requests metered per second. Then it
checks that the ledger holds every call wrk saw answered (at most the calls cut off in flight
more). Not a test: it needs nginx, wrk and PostgreSQL, and takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.nginx import NginxServer  # noqa: E402
from harness.tollway_node import TollwayNode, _request  # noqa: E402
from harness.wrk import answered_2xx, key_rotation_script  # noqa: E402

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATABASE = "tollway_bench_flush"
STATS = "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1"


class PostgresNode(TollwayNode):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(TOLLWAY_DATABASE="postgres", TOLLWAY_PG_HOST=PG["host"], TOLLWAY_PG_PORT=str(PG["port"]),
                   TOLLWAY_PG_USER=PG["user"], TOLLWAY_PG_DATABASE=DATABASE)
        return env


async def _admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _stats() -> dict[str, int]:
    conn = await asyncpg.connect(database="postgres", **PG)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(STATS, DATABASE)
    finally:
        await conn.close()
    return dict(row)


def _metered(node: TollwayNode) -> int:
    status, body = _request(node.admin_port, "GET", "/billable?period=day&route=bench&group_by=status&size=1000")
    assert status == 200, body
    return sum(row["requests"] for row in json.loads(body)["data"] if row["status"] == 200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    asyncio.run(_admin_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
    asyncio.run(_admin_sql(f"CREATE DATABASE {DATABASE}"))
    work = Path(tempfile.mkdtemp(prefix="tollway-flush-"))
    keys = [f"key-{i}" for i in range(args.consumers)]
    with NginxServer.upstream(work / "upstream") as upstream:
        node = PostgresNode(work / "node", plugins="key-auth,billable", workers=args.workers)
        node.bootstrap()
        node.start()
        try:
            steps = [("PUT", "/services/bench", {"url": upstream.url}),
                     ("POST", "/services/bench/routes", {"name": "bench", "paths[]": "/bench"}),
                     ("POST", "/routes/bench/plugins", {"name": "key-auth"}),
                     ("POST", "/plugins", {"name": "billable"})]
            for i, key in enumerate(keys):
                steps += [("PUT", f"/consumers/c{i}", {}), ("POST", f"/consumers/c{i}/key-auth", {"key": key})]
            for method, path, form in steps:
                status, body = _request(node.admin_port, method, path, form)
                assert status in (200, 201), (path, status, body)
            time.sleep(1.5)
            before = asyncio.run(_stats())
            script = key_rotation_script(work, "/bench", keys)
            result = subprocess.run(
                ["wrk", "-t1", f"-c{args.connections}", f"-d{int(args.duration)}s", "-s", str(script),
                 f"http://127.0.0.1:{node.proxy_port}/bench"], capture_output=True, text=True, check=True)
            time.sleep(3.0)  # two flush intervals and then some
            after = asyncio.run(_stats())
            answered = answered_2xx(result.stdout)
            metered = _metered(node)
        finally:
            node.stop()
    seconds = args.duration
    commits = after["xact_commit"] - before["xact_commit"]
    rows = sum(after[k] - before[k] for k in ("tup_inserted", "tup_updated", "tup_deleted"))
    report = {
        "duration_s": seconds, "consumers": args.consumers, "workers": args.workers,
        "requests_per_s": round(metered / seconds),
        "db_transactions_per_s": round(commits / seconds, 1),
        "db_rows_written_per_s": round(rows / seconds, 1),
        "db_rows_per_1000_requests": round(1000 * rows / max(metered, 1), 2),
        "wrk_answered": answered, "metered_200": metered, "metered_minus_answered": metered - answered,
        "cut_off_bound": args.connections,
    }
    print(json.dumps(report, indent=2))
    return 0 if answered and 0 <= metered - answered <= args.connections else 1


if __name__ == "__main__":
    sys.exit(main())
