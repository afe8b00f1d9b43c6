"""The flusher's CPU per spool line: UsageBatch.add_lines over lines from the worker's own encoder.

    .venv/bin/python bench/flusher_lines.py [--lines 200000] [--repeat 5]

Lines come in chunks of 420 (what a 64 KiB read holds); the traffic shapes are those the README's
flusher table names. Prints one JSON object: nanoseconds per line (best of --repeat) per shape.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.metering.conftest import ROUTE, SERVICE, finished_call  # noqa: E402
from tollway.metering.aggregate import UsageBatch  # noqa: E402
from tollway.metering.spool_line import LineEncoder  # noqa: E402

CHUNK = 420


def lines_for(shape: str, count: int) -> list[bytes]:
    rng = random.Random(1)
    encoder = LineEncoder()
    consumers = [{"id": f"{i:08d}-1111-4111-8111-111111111111", "username": f"user{i}", "custom_id": None}
                 for i in range(1000)]
    clients, sizes_differ = SHAPES[shape]
    out = []
    start = 1_790_000_000.0
    for i in range(count):
        consumer = consumers[i % clients] if clients <= 2 else rng.choice(consumers)
        size = 1000 + (i % 97 if sizes_differ else 0)
        call = finished_call(started_at=start + i / 40_000, consumer=consumer, service=SERVICE, route=ROUTE,
                             response_bytes=size)
        out.append(encoder.encode(call, call.started_at + 0.0007 + rng.random() * 0.0006).rstrip(b"\n"))
    return out


# shape -> (clients, whether each line has a response size of its own)
SHAPES = {
    "one client": (1, False),
    "two clients alternating": (2, False),
    "1,000 clients at random": (1000, False),
    "one client, sizes differing": (1, True),
    "1,000 clients at random, sizes differing": (1000, True),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shape", choices=list(SHAPES), action="append", help="only these shapes")
    args = parser.parse_args()
    result = {}
    for shape in args.shape or SHAPES:
        lines = lines_for(shape, args.lines)
        chunks = [lines[i:i + CHUNK] for i in range(0, len(lines), CHUNK)]
        best = float("inf")
        for _ in range(args.repeat):
            batch = UsageBatch()
            started = time.perf_counter()
            for chunk in chunks:
                batch.add_lines(chunk)
            batch.usage_rows()
            if hasattr(batch, "latency_rows"):  # (absent before latency histograms: for comparisons)
                batch.latency_rows()
            best = min(best, time.perf_counter() - started)
        result[shape] = round(best / len(lines) * 1e9)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
