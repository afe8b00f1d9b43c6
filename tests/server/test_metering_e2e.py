"""Billing-grade metering with real processes: every call a client received is counted exactly once,
through graceful stops, reloads, worker restarts, kill -9 of every process, and database outages."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from tests.server.nodes import Node, running, tollway
from tollway.config import Settings
from tollway.store.db import Database


class Load:
    """Client threads on keep-alive connections, counting the responses they received."""

    def __init__(self, node: Node, keys: dict[str, str], threads_per_key: int = 2) -> None:
        self.node = node
        self.received: collections.Counter[tuple[str, int]] = collections.Counter()
        self.errors = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(user, key), daemon=True)
            for user, key in keys.items() for _ in range(threads_per_key)
        ]

    def _run(self, user: str, key: str) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.done.is_set():
                try:
                    response = client.get(self.node.proxy + "/mock/requests", headers={"apikey": key})
                except httpx.HTTPError:
                    with self.lock:
                        self.errors += 1
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.received[(user, response.status_code)] += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(15)

    @property
    def in_flight_bound(self) -> int:
        return len(self.threads)


def metered(node: Node) -> collections.Counter[tuple[str, int]]:
    rows = node.json("/billable?period=month&route=mock&size=1000")["data"]
    totals: collections.Counter[tuple[str, int]] = collections.Counter()
    for row in rows:
        user = (row.get("consumer") or {}).get("username") or "-"
        totals[(user, row["status"])] += row["requests"]
    return totals


def wait_for_totals(node: Node, want: collections.Counter[tuple[str, int]], timeout: float = 10) -> None:
    got: collections.Counter[tuple[str, int]] = collections.Counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = metered(node)
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"metered {dict(got)} != received {dict(want)}\n{node.log()}")


_KEY = "grain, bucket_start, service_id, route_id, status"
_SUMS = "requests, request_bytes, response_bytes, latency_us_sum"


def rollup_and_ledger(settings: Settings) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """(the rollup's rows, the ledger's rows summed over consumers), both in key order."""
    async def read() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        db = Database.from_settings(settings)
        try:
            async with db.connect() as conn:
                rollup = (await conn.execute(text(
                    f"SELECT {_KEY}, {_SUMS} FROM billable_usage_routes ORDER BY {_KEY}"))).all()
                summed = (await conn.execute(text(
                    f"SELECT {_KEY}, SUM(requests), SUM(request_bytes), SUM(response_bytes), SUM(latency_us_sum) "
                    f"FROM billable_usage GROUP BY {_KEY} ORDER BY {_KEY}"))).all()
        finally:
            await db.dispose()
        # PostgreSQL sums bigints as numeric: compare the sums as ints.
        return ([(*row[:5], *map(int, row[5:])) for row in rollup], [(*row[:5], *map(int, row[5:])) for row in summed])
    return asyncio.run(read())


def assert_rollup_matches(node: Node) -> None:
    """The rollup without the consumer holds, for every grain, the ledger's rows summed over consumers."""
    rollup, summed = rollup_and_ledger(node.settings)
    assert {row[0] for row in rollup} == {"minute", "hour", "day", "week", "month"}
    assert rollup == summed


def seed(node: Node, upstream: str) -> None:
    for path, data in [
        ("/plugins", {"name": "billable"}),
        ("/services/", {"name": "mock", "url": upstream}),
        ("/services/mock/routes", {"paths[]": "/mock", "name": "mock"}),
        ("/routes/mock/plugins", {"name": "key-auth"}),
        ("/consumers/", {"username": "digit"}),
        ("/consumers/", {"username": "poppy"}),
        ("/consumers/poppy/key-auth/", {"key": "poppy-secret"}),
        ("/consumers/digit/key-auth/", {"key": "digit-secret"}),
        # Written last: a node that routes /ready has every write above (metered() counts route mock only).
        ("/services/mock/routes", {"paths[]": "/ready", "name": "ready"}),
    ]:
        response = node.post(path, **data)
        assert response.status_code == 201, (path, response.text)
    wait_seeded(node)


@contextlib.contextmanager
def seeded_node(settings: Settings, upstream_port: int, workers: int) -> Iterator[Node]:
    """A running node with `workers` workers and the seed's configuration (seed()), closed after."""
    with running(settings.with_overrides(workers=workers)) as node:
        seed(node, f"http://127.0.0.1:{upstream_port}")
        yield node


def wait_seeded(node: Node, timeout: float = 3.0) -> None:
    node.wait_until(lambda: httpx.get(node.proxy + "/ready/", headers={"connection": "close"}).status_code == 200,
                    timeout=timeout, what="the seed configuration applied")


KEYS = {"poppy": "poppy-secret", "digit": "digit-secret"}


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with seeded_node(settings, echo_upstream, workers=2) as running:
        yield running


def test_usage_is_visible_within_two_seconds(node: Node) -> None:
    for _ in range(5):
        assert httpx.get(node.proxy + "/mock/requests", headers={"apikey": "poppy-secret"}).status_code == 200
    assert httpx.get(node.proxy + "/mock/requests").status_code == 401
    want = collections.Counter({("poppy", 200): 5, ("-", 401): 1})
    started = time.monotonic()
    wait_for_totals(node, want, timeout=2.0)
    assert time.monotonic() - started <= 2.0
    assert_rollup_matches(node)
    metering = node.json("/status")["metering"]
    assert metering["calls_committed"] >= 6
    # The spool's files are allocated in full when opened; what they hold is what counts here.
    assert 0 < metering["spool_bytes"] < 1 << 20 <= metering["spool_alarm_bytes"]


def test_graceful_stop_under_load_loses_nothing(node: Node) -> None:
    with Load(node, KEYS) as load:
        time.sleep(1.5)
        result = tollway(node.settings, "stop", env=node.env)
    assert result.returncode == 0, result.stderr
    node.start()
    wait_for_totals(node, +load.received)


def test_reload_and_worker_restart_under_load_lose_nothing(node: Node) -> None:
    with Load(node, KEYS) as load:
        time.sleep(0.7)
        assert tollway(node.settings, "reload", env=node.env).returncode == 0
        time.sleep(0.5)
        os.kill(node.worker_pids()[0], signal.SIGKILL)
        time.sleep(1.0)
    # A worker killed with -9 may have cut off calls in flight; none it answered is lost.
    deadline = time.monotonic() + 10
    want = +load.received
    while time.monotonic() < deadline:
        got = metered(node)
        if all(got[k] >= v for k, v in want.items()):
            break
        time.sleep(0.2)
    for k, v in want.items():
        assert v <= got[k] <= v + load.in_flight_bound, (k, got, want)


def test_kill_9_of_every_process_under_load_loses_no_answered_call(node: Node) -> None:
    with Load(node, KEYS) as load:
        time.sleep(2.0)
        node.kill_all()
    answered = +load.received
    assert sum(answered.values()) > 50
    node.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = metered(node)
        if all(got[k] >= v for k, v in answered.items()):
            break
        time.sleep(0.2)
    invented = sum(got.values()) - sum(answered.values())
    for key, count in answered.items():
        assert got[key] >= count, f"lost calls of {key}: metered {got[key]}, answered {count}"
    assert 0 <= invented <= load.in_flight_bound, f"{invented} calls beyond those cut off in flight"
    # A second restart replays nothing twice.
    assert node.stop() == 0
    node.start()
    time.sleep(1.0)
    assert metered(node) == got
    assert_rollup_matches(node)
