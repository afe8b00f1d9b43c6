#!/usr/bin/env python3
"""A soak with faults: steady load while the database restarts twice, a worker is killed and the
master runs out of descriptors once; the ledger must equal what clients received, and GET /status
must tell the truth at every step.

    .venv/bin/python bench/fault_soak.py [--minutes 10] [--workers 2] [--connections 50]

A PostgreSQL server of its own (initdb + pg_ctl, as tests/store/pg_instance.py), nginx `return 200`
as the upstream, one Tollway node (key-auth + billable, two consumers) under wrk in back-to-back
segments. The faults, at fixed shares of the run:

  20%  PostgreSQL stopped (fast shutdown), started again 15 s later
  40%  a worker killed with kill -9 (the master starts another)
  60%  the master's descriptor limit set below what it holds for 5 s (every open fails: EMFILE)
  80%  PostgreSQL crashed (immediate shutdown: recovery at the next start), started again 15 s later

A thread asks GET /status every half second all along. What it must have seen:
- while the database is away: `database.reachable` false, and metering's flush failures and its
  waiting calls above zero; within 30 s of its return: reachable, nothing waiting, not behind;
- after the worker's death: the configured number of workers again, within 10 s;
- after the descriptor famine: metering's error count higher than before, and no flusher restart
  needed (the loop lives through it);
- at the end: every response wrk received is in the ledger, plus at most the calls cut off in
  flight (each segment's connections, and those of the killed worker).

Prints a timeline and a JSON summary; exits non-zero when a check fails. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness.nginx import NginxServer  # noqa: E402
from harness.wrk import answered_2xx, key_rotation_script  # noqa: E402

from tests.conftest import make_settings  # noqa: E402
from tests.server.nodes import Node  # noqa: E402
from tests.store.pg_instance import PgInstance  # noqa: E402

KEYS = {"poppy": "poppy-secret", "digit": "digit-secret"}


class Watcher(threading.Thread):
    """GET /status every half second: (seconds since start, the answer or None)."""

    def __init__(self, admin: str) -> None:
        super().__init__(daemon=True)
        self.admin = admin
        self.started = time.monotonic()
        self.seen: list[tuple[float, dict[str, Any] | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.done.is_set():
                at = time.monotonic() - self.started
                try:
                    answer = client.get(self.admin + "/status")
                    self.seen.append((at, answer.json() if answer.status_code == 200 else None))
                except (httpx.HTTPError, ValueError):
                    self.seen.append((at, None))
                self.done.wait(0.5)

    def between(self, lo: float, hi: float) -> list[dict[str, Any]]:
        return [status for at, status in self.seen if lo <= at < hi and status is not None]


def _metered(admin: str) -> int:
    answer = httpx.get(admin + "/billable?period=year&route=mock&group_by=status&size=1000", timeout=60)
    answer.raise_for_status()
    return sum(row["requests"] for row in answer.json()["data"] if row["status"] == 200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segment-seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    total = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="tollway-fault-soak-"))
    pg = PgInstance().init()
    pg.start()
    log: list[str] = []
    checks: dict[str, bool] = {}
    try:
        with NginxServer.upstream(work / "upstream") as upstream:
            settings = make_settings(work / "prefix", "postgres", pg_port=str(pg.port), pg_database="postgres",
                                     pg_timeout="2", workers=str(args.workers), log_level="warn")
            node = Node(settings)
            node.bootstrap()
            node.start()
            try:
                for path, data in [("/plugins", {"name": "billable"}),
                                   ("/services", {"name": "mock", "url": upstream.url}),
                                   ("/services/mock/routes", {"name": "mock", "paths[]": "/mock"}),
                                   ("/routes/mock/plugins", {"name": "key-auth"})]:
                    assert node.post(path, **data).status_code == 201
                for user, key in KEYS.items():
                    assert node.post("/consumers", username=user).status_code == 201
                    assert node.post(f"/consumers/{user}/key-auth", key=key).status_code == 201
                time.sleep(1.5)
                watcher = Watcher(node.admin)
                watcher.start()
                script = key_rotation_script(work, "/mock/requests", list(KEYS.values()))
                answered = segments = 0
                faults = [(0.2, "stop the database"), (0.4, "kill a worker"), (0.6, "starve the master"),
                          (0.8, "crash the database")]
                marks: dict[str, float] = {}
                fault_thread = threading.Thread(target=_faults, args=(faults, total, watcher, node, pg, marks, log),
                                                daemon=True)
                fault_thread.start()
                while time.monotonic() - watcher.started < total:
                    left = total - (time.monotonic() - watcher.started)
                    seconds = max(1, min(args.segment_seconds, int(left)))
                    result = subprocess.run(
                        ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "-s", str(script),
                         f"http://{settings.proxy_listen}/mock/requests"], capture_output=True, text=True)
                    answered += answered_2xx(result.stdout)
                    segments += 1
                    print(f"{time.monotonic() - watcher.started:6.0f} s  segment {segments}: {answered:,} answered",
                          flush=True)
                fault_thread.join(60)
                time.sleep(5)
                metered = _metered(node.admin)
                watcher.done.set()
                watcher.join(10)
                checks.update(_judge(watcher, marks, args.workers))
            finally:
                node.close()
    finally:
        pg.remove()
    bound = segments * args.connections + args.connections
    extra = metered - answered
    checks["ledger: every answer metered, at most the cut-off calls more"] = 0 <= extra <= bound
    summary = {"minutes": args.minutes, "workers": args.workers, "segments": segments, "answered_2xx": answered,
               "requests_per_s": round(answered / total), "metered_200": metered, "metered_minus_answered": extra,
               "cut_off_bound": bound, "faults": log, "checks": checks,
               "result": "pass" if all(checks.values()) else "FAIL"}
    print(json.dumps(summary, indent=2))
    return 0 if summary["result"] == "pass" else 1


def _faults(faults: list[tuple[float, str]], total: float, watcher: Watcher, node: Node, pg: PgInstance,
            marks: dict[str, float], log: list[str]) -> None:
    def now() -> float:
        return time.monotonic() - watcher.started

    def note(text: str) -> None:
        log.append(f"{now():.1f} s: {text}")
        print(f"{now():6.1f} s  {text}", flush=True)

    for share, fault in faults:
        while now() < share * total:
            time.sleep(0.2)
        marks[fault] = now()
        if fault in ("stop the database", "crash the database"):
            pg.stop("fast" if fault == "stop the database" else "immediate")
            note(f"PostgreSQL {'stopped' if fault == 'stop the database' else 'crashed'}")
            time.sleep(15)
            pg.start()
            marks[fault + ": back"] = now()
            note("PostgreSQL started again")
        elif fault == "kill a worker":
            victim = node.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            note(f"worker {victim} killed with kill -9")
        else:
            assert node.proc is not None
            master = node.proc.pid
            soft, hard = resource.prlimit(master, resource.RLIMIT_NOFILE)
            resource.prlimit(master, resource.RLIMIT_NOFILE, (16, hard))
            note("the master's descriptor limit set to 16")
            time.sleep(5)
            resource.prlimit(master, resource.RLIMIT_NOFILE, (soft, hard))
            marks[fault + ": back"] = now()
            note("the master's descriptor limit restored")


def _judge(watcher: Watcher, marks: dict[str, float], workers: int) -> dict[str, bool]:
    checks: dict[str, bool] = {}
    for fault in ("stop the database", "crash the database"):
        down, back = marks[fault], marks[fault + ": back"]
        during = watcher.between(down + 3, back)
        checks[f"{fault}: /status said the database was unreachable"] = any(
            not s["database"]["reachable"] for s in during)
        checks[f"{fault}: /status showed flush failures and calls waiting"] = any(
            s["metering"]["flush_failures"] > 0 and s["metering"]["waiting_calls"] > 0 for s in during)
        after = watcher.between(back + 30, back + 40)
        checks[f"{fault}: within 30 s of its return, reachable, nothing waiting, not behind"] = bool(after) and all(
            s["database"]["reachable"] and not s["metering"]["behind"] and s["metering"]["waiting_calls"] == 0
            for s in after)
    killed = marks["kill a worker"]
    checks["kill a worker: the workers are back within 10 s"] = any(
        len(s["workers"]) == workers for s in watcher.between(killed + 1, killed + 10))
    starved, fed = marks["starve the master"], marks["starve the master: back"]
    before = watcher.between(starved - 5, starved)
    after = watcher.between(fed + 2, fed + 12)
    checks["starve the master: errors counted, no flusher restart"] = bool(before) and bool(after) and (
        after[-1]["metering"]["errors_total"] > before[-1]["metering"]["errors_total"]
        and after[-1]["metering"]["flusher_restarts"] == 0)
    return checks


if __name__ == "__main__":
    sys.exit(main())
