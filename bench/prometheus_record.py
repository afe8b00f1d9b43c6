"""The prometheus plugin's counting, per call, against prometheus_client's multiprocess mode.

    .venv/bin/python -P bench/prometheus_record.py [--calls 200000]

Both record the same call with every metric on (per_consumer, status codes, latencies,
bandwidth): one request counter, two bandwidth counters and three histograms.

- `tally`: tollway.plugins.prometheus.handler.Handler.meter (compiled), which adds to the worker's
  Tally; the master gets the sums once a second.
- `multiprocess`: prometheus_client with PROMETHEUS_MULTIPROC_DIR set: every inc() and observe()
  writes to the worker's mmap'd file under a lock, and the master reads every worker's files at
  each scrape.

Prints microseconds per call, the best of 5 runs (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KONG = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
UPSTREAM = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)


def best(run: object, calls: int) -> float:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        run(calls)  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return min(times) / calls * 1e6


def tally(calls: int) -> float:
    from tollway.plugins.prometheus.handler import Handler
    from tollway.proxy.call import Call

    handler = Handler({"per_consumer": True, "status_code_metrics": True, "latency_metrics": True,
                       "bandwidth_metrics": True, "upstream_health_metrics": False}, SimpleNamespace())  # type: ignore[arg-type]
    call = Call(b"GET", "/bench", "", [], "127.0.0.1", started_at=time.time(), received_at=1.0)
    call.service = {"id": "s1", "name": "bench", "host": "127.0.0.1"}
    call.route = {"id": "r1", "name": "bench"}
    call.consumer = {"id": "c1", "username": "bench"}
    call.status, call.request_bytes, call.response_bytes = 200, 120, 340
    call.sent_at, call.first_byte_at = 1.0005, 1.0015
    meter = handler.meter

    def run(n: int) -> None:
        for _ in range(n):
            meter(call)
        Handler.recorder.take()

    return best(run, calls)


def multiprocess(calls: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        from prometheus_client import CollectorRegistry, Counter, Histogram

        registry = CollectorRegistry()
        requests = Counter("kong_http_requests", "", ("service", "route", "code", "source", "consumer"),
                           registry=registry)
        bandwidth = Counter("kong_bandwidth_bytes", "", ("service", "route", "direction", "consumer"),
                            registry=registry)
        kong = Histogram("kong_kong_latency_ms", "", ("service", "route"), buckets=KONG, registry=registry)
        upstream = Histogram("kong_upstream_latency_ms", "", ("service", "route"), buckets=UPSTREAM, registry=registry)
        request = Histogram("kong_request_latency_ms", "", ("service", "route"), buckets=UPSTREAM, registry=registry)
        started_at = time.time()

        def run(n: int) -> None:
            for _ in range(n):
                requests.labels("bench", "bench", "200", "service", "bench").inc()
                bandwidth.labels("bench", "bench", "ingress", "bench").inc(120)
                bandwidth.labels("bench", "bench", "egress", "bench").inc(340)
                request_ms = (time.time() - started_at) * 1000
                request.labels("bench", "bench").observe(request_ms)
                upstream.labels("bench", "bench").observe(1.0)
                kong.labels("bench", "bench").observe(request_ms - 1.0)

        return best(run, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    print(f"tally:        {tally(args.calls):.3f} us per call")
    print(f"multiprocess: {multiprocess(args.calls // 10):.3f} us per call")


if __name__ == "__main__":
    main()
