#!/usr/bin/env python3
"""A soak: Tollway under steady load for a long time, checking that it does not drift.

    .venv/bin/python bench/soak.py [--minutes 10] [--workers 2] [--rate-segments 30]

nginx (`return 200`) is the upstream; a Tollway node on SQLite with key-auth and billable (as in
the seed, two consumers) takes wrk load in back-to-back segments. Between segments it samples
the RSS and the open descriptors of the master and of every worker. At the end it checks:
- RSS and descriptors are flat, against the highest sample of the first quarter (the warm-up,
  while idle upstream connections fill the keep-alive pools): the last RSS sample, and the median
  descriptor count of the last quarter, within 10% of it. Descriptors are judged by a median
  because the idle upstream connections come and go with the load (up to
  upstream_keepalive_pool_size per worker): a leak moves the median, one busy sample does not;
- the ledger is exact: every response wrk received is metered, plus at most the calls cut off
  in flight when each segment's wrk stopped (its connection count per segment).
It prints a JSON summary and exits non-zero when a check fails. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.nginx import NginxServer  # noqa: E402
from harness.tollway_node import TollwayNode, _request  # noqa: E402
from harness.wrk import answered_2xx, key_rotation_script  # noqa: E402

KEYS = {"poppy": "poppy-secret", "digit": "digit-secret"}
FLAT = 0.10


def _sample(master_pid: int) -> dict[str, int]:
    """RSS (bytes) and open descriptors summed over the master and its workers."""
    master = psutil.Process(master_pid)
    rss = fds = 0
    for process in [master, *master.children()]:
        try:
            rss += process.memory_info().rss
            fds += process.num_fds()
        except psutil.NoSuchProcess:
            pass
    return {"rss": rss, "fds": fds}


def _metered(node: TollwayNode) -> int:
    status, body = _request(node.admin_port, "GET", "/billable?period=year&route=mock&group_by=status&size=1000")
    if status != 200:
        raise RuntimeError(f"/billable answered {status}: {body[:200]!r}")
    return sum(row["requests"] for row in json.loads(body)["data"] if row["status"] == 200)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segment-seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tollway-soak-"))
    with NginxServer.upstream(work / "upstream") as upstream:
        node = TollwayNode(work / "node", plugins="key-auth,billable", workers=args.workers)
        node.bootstrap()
        node.start()
        try:
            steps = [("POST", "/plugins", {"name": "billable"}),
                     ("PUT", "/services/mock", {"url": upstream.url}),
                     ("POST", "/services/mock/routes", {"name": "mock", "paths[]": "/mock"}),
                     ("POST", "/routes/mock/plugins", {"name": "key-auth"})]
            for user, key in KEYS.items():
                steps += [("PUT", f"/consumers/{user}", {}), ("POST", f"/consumers/{user}/key-auth", {"key": key})]
            for method, path, form in steps:
                status, body = _request(node.admin_port, method, path, form)
                if status not in (200, 201):
                    raise RuntimeError(f"{method} {path} answered {status}: {body[:200]!r}")
            time.sleep(1.5)
            master_pid = node.master_pid()
            assert master_pid is not None
            script = key_rotation_script(work, "/mock/requests", list(KEYS.values()))
            deadline = time.monotonic() + args.minutes * 60
            answered = segments = 0
            samples: list[dict[str, int]] = []
            while time.monotonic() < deadline:
                result = subprocess.run(
                    ["wrk", "-t1", f"-c{args.connections}", f"-d{args.segment_seconds}s", "-s", str(script),
                     f"http://127.0.0.1:{node.proxy_port}/mock/requests"],
                    capture_output=True, text=True, check=True)
                answered += answered_2xx(result.stdout)
                segments += 1
                time.sleep(1.0)  # let the segment's client connections finish closing
                samples.append(_sample(master_pid))
                print(f"segment {segments}: {answered:,} answered so far, "
                      f"RSS {samples[-1]['rss'] / 2**20:.1f} MiB, {samples[-1]['fds']} fds", flush=True)
            time.sleep(3.0)
            metered = _metered(node)
        finally:
            node.stop()
    # The first quarter is the warm-up: idle upstream connections pile up to the pool's bound
    # (upstream_keepalive_pool_size per worker) as the kernel spreads clients over the workers.
    warmup = samples[:max(1, len(samples) // 4)]
    baseline = {"rss": max(s["rss"] for s in warmup), "fds": max(s["fds"] for s in warmup)}
    last = samples[-1]
    rss_drift = last["rss"] / baseline["rss"] - 1
    fds_late = statistics.median(s["fds"] for s in samples[-max(1, len(samples) // 4):])
    fd_drift = fds_late / baseline["fds"] - 1
    extra = metered - answered
    summary = {
        "minutes": args.minutes, "workers": args.workers, "segments": segments,
        "requests_answered": answered, "requests_per_s": round(answered / (args.minutes * 60)),
        "metered_200": metered, "metered_minus_answered": extra,
        "cut_off_bound": segments * args.connections,
        "rss_mib_baseline": round(baseline["rss"] / 2**20, 1), "rss_mib_last": round(last["rss"] / 2**20, 1),
        "rss_mib_max": round(max(s["rss"] for s in samples) / 2**20, 1),
        "rss_drift": round(rss_drift, 4), "fds_baseline": baseline["fds"], "fds_last": last["fds"],
        "fds_last_quarter_median": fds_late,
        "fds_max": max(s["fds"] for s in samples), "fd_drift": round(fd_drift, 4),
    }
    ok = rss_drift <= FLAT and fd_drift <= FLAT and 0 <= extra <= segments * args.connections
    summary["result"] = "pass" if ok else "FAIL"
    print(json.dumps(summary, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
