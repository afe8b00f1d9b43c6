"""A constant-rate, open-loop HTTP load generator (wrk2-style), corrected for coordinated omission.

wrk is closed-loop: a slow response delays the next request, so the stall is measured once while
the requests that should have been sent meanwhile are never sent at all. Here the schedule is
fixed in advance: request k is due at `start + k / rate`, dispatched round-robin over N keep-alive
connections. A connection that is still waiting queues its due requests, and every latency is
measured from the request's *scheduled* time, so a stall counts for all the requests it delays.

Three series are recorded (µs): `latency` (scheduled -> response complete; the corrected one),
`service` (actually sent -> complete; what a closed-loop tool would see) and `send_lag`
(scheduled -> actually sent; includes the ~1 ms granularity of the event loop's timers).

Run in its own process so that nothing else in the harness (the RSS sampler, for one) takes the
GIL during a measurement: `python -m bench.harness.openloop --port P --rate R ...` prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import subprocess
import sys
import time
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httptools
import uvloop

ROOT = Path(__file__).resolve().parents[2]
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}
_MIN_TIMER = 0.001  # uvloop rounds shorter delays to 0 ms, which would spin the loop


@dataclass(frozen=True)
class OpenLoopPlan:
    """What to send: the target, the constant rate (requests/s) and for how long."""

    port: int
    rate: float
    duration: float
    host: str = "127.0.0.1"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    connections: int = 50
    warmup: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.rate <= 0:
            problems.append(f"rate must be positive, got {self.rate}")
        if self.duration <= 0:
            problems.append(f"duration must be positive, got {self.duration}")
        if self.connections < 1:
            problems.append(f"connections must be at least 1, got {self.connections}")
        if problems:
            raise ValueError("; ".join(problems))

    def request(self) -> bytes:
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class OpenLoopResult:
    """Percentiles are in microseconds, over the requests scheduled after the warm-up.

    `achieved_rps` counts the responses that arrived during the measured part of the schedule,
    whatever their scheduled time: below the target rate, the server did not keep up. `errors`
    counts by kind: `status` (>= 400), `closed`, `parse`, and `unanswered` (still waiting when
    the grace period after the schedule ended), which the percentiles cannot include.
    """

    rate: float
    duration_s: float
    connections: int
    measured: int
    achieved_rps: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    service_us: dict[str, float]
    send_lag_us: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenLoopResult:
        return cls(**data)


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p999/max (nearest rank) of samples, rounded to 0.1; zeros when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return {name: 0.0 for name in (*PERCENTILES, "max")}
    count = len(ordered)
    result = {name: round(ordered[min(count - 1, max(0, math.ceil(q * count) - 1))], 1)
              for name, q in PERCENTILES.items()}
    result["max"] = round(ordered[-1], 1)
    return result


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, the due ones queued behind it."""

    def __init__(self, generator: _Generator) -> None:
        self.generator = generator
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        # Scheduled times of the requests not answered yet; the head one is in flight.
        self.queue: deque[float] = deque()
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.queue:  # the request in flight fails as `parse`, the queued ones as `closed`
                self.queue.popleft()
                self.generator.fail("parse", 1)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.generator.fail("closed", len(self.queue))
        self.queue.clear()

    def enqueue(self, scheduled: float) -> None:
        if self.closed:
            self.generator.fail("closed", 1)
            return
        self.queue.append(scheduled)
        if len(self.queue) == 1:
            self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.generator.request)

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        scheduled = self.queue.popleft()
        self.generator.record(scheduled, self.sent_at, now, self.parser.get_status_code())
        if self.queue:
            self._send()


class _Generator:
    """Dispatches the fixed schedule from a timer and records what comes back."""

    def __init__(self, plan: OpenLoopPlan) -> None:
        self.plan = plan
        self.request = plan.request()
        self.total = max(1, round(plan.rate * (plan.warmup + plan.duration)))
        self.connections: list[_Connection] = []
        self.start = 0.0
        self.measure_from = 0.0
        self.measure_until = 0.0
        self.next_index = 0
        self.outstanding = 0
        self.done = asyncio.Event()
        self.errors: dict[str, int] = {}
        self.crash: str | None = None
        self.completed_in_window = 0  # responses that arrived while the measured schedule ran
        # Samples in µs, for requests scheduled after the warm-up.
        self.latency = array("d")
        self.service = array("d")
        self.send_lag = array("d")

    async def run(self) -> OpenLoopResult:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._crashed)
        for _ in range(self.plan.connections):
            _, protocol = await loop.create_connection(lambda: _Connection(self), self.plan.host, self.plan.port)
            self.connections.append(protocol)
        self.start = time.perf_counter() + 0.01
        self.measure_from = self.start + self.plan.warmup
        self.measure_until = self.measure_from + self.plan.duration
        loop.call_later(0.01, self._tick)
        grace = max(5.0, self.plan.duration)
        try:
            await asyncio.wait_for(self.done.wait(), self.plan.warmup + self.plan.duration + grace)
        except TimeoutError:
            self.fail("unanswered", self.outstanding)
        if self.crash is not None:
            raise RuntimeError(f"the generator failed: {self.crash}")
        result = self.result()  # before closing: what is still queued was counted as unanswered
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.abort()
        return result

    def _crashed(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # A bug in a callback must end the run loudly, not leave it waiting for answers.
        exc = context.get("exception")
        self.crash = repr(exc) if exc is not None else str(context.get("message"))
        self.done.set()

    def _tick(self) -> None:
        due = min(self.total, int((time.perf_counter() - self.start) * self.plan.rate) + 1)
        connections = self.connections
        count = len(connections)
        while self.next_index < due:
            scheduled = self.start + self.next_index / self.plan.rate
            self.outstanding += 1
            connections[self.next_index % count].enqueue(scheduled)
            self.next_index += 1
        if self.next_index < self.total:
            delay = self.start + self.next_index / self.plan.rate - time.perf_counter()
            asyncio.get_running_loop().call_later(max(delay, _MIN_TIMER), self._tick)
        elif self.outstanding <= 0:
            self.done.set()

    def record(self, scheduled: float, sent_at: float, now: float, status: int) -> None:
        self.outstanding -= 1
        if status >= 400:
            self.errors["status"] = self.errors.get("status", 0) + 1
        if scheduled >= self.measure_from:
            self.latency.append((now - scheduled) * 1e6)
            self.service.append((now - sent_at) * 1e6)
            self.send_lag.append((sent_at - scheduled) * 1e6)
        if self.measure_from <= now <= self.measure_until:
            self.completed_in_window += 1
        if self.outstanding <= 0 and self.next_index >= self.total:
            self.done.set()

    def fail(self, kind: str, count: int) -> None:
        if count <= 0:
            return
        self.errors[kind] = self.errors.get(kind, 0) + count
        self.outstanding -= count
        if self.outstanding <= 0 and self.next_index >= self.total:
            self.done.set()

    def result(self) -> OpenLoopResult:
        return OpenLoopResult(
            rate=self.plan.rate, duration_s=self.plan.duration, connections=self.plan.connections,
            measured=len(self.latency), achieved_rps=round(self.completed_in_window / self.plan.duration, 1),
            errors=dict(self.errors), latency_us=percentiles(self.latency),
            service_us=percentiles(self.service), send_lag_us=percentiles(self.send_lag),
        )


def generate(plan: OpenLoopPlan) -> OpenLoopResult:
    """Run the plan in this process on a fresh uvloop event loop, with the GC out of the way."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_Generator(plan).run())
    finally:
        gc.enable()


def run_open_loop(plan: OpenLoopPlan) -> OpenLoopResult:
    """Run the plan in a child process (so the caller's threads stay out of its way)."""
    command = [sys.executable, "-m", __name__, "--host", plan.host, "--port", str(plan.port),
               "--path", plan.path, "--rate", str(plan.rate), "--duration", str(plan.duration),
               "--connections", str(plan.connections), "--warmup", str(plan.warmup)]
    for name, value in plan.headers.items():
        command += ["--header", f"{name}: {value}"]
    budget = 2 * (plan.warmup + plan.duration) + 60
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=budget)
    if result.returncode != 0:
        raise RuntimeError(f"open-loop generator failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return OpenLoopResult.from_dict(json.loads(result.stdout))


def _parse_args(argv: Sequence[str] | None) -> OpenLoopPlan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent but not measured")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    headers = dict(tuple(part.strip() for part in header.split(":", 1)) for header in args.header)
    return OpenLoopPlan(port=args.port, rate=args.rate, duration=args.duration, host=args.host,
                        path=args.path, headers=headers, connections=args.connections, warmup=args.warmup)


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(generate(_parse_args(argv)).to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
