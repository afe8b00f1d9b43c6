"""PostgreSQL stopped, starting, recovering and restarted under a running node: the Admin API
answers 503 (and GET /status 200 with the database unreachable), never 500, and comes back."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.server.nodes import Node
from tests.store.pg_instance import PgInstance


@pytest.fixture
def pg() -> Iterator[PgInstance]:
    if not PgInstance.available():
        pytest.skip("initdb and pg_ctl (PostgreSQL's server binaries) are not installed")
    instance = PgInstance().init()
    try:
        instance.start()
        yield instance
    finally:
        instance.remove()


class Clients:
    """Threads asking the Admin API all along, recording every status they get."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.seen: collections.Counter[tuple[str, int]] = collections.Counter()
        self.failures: list[str] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(what,), daemon=True)
                        for what in ("status", "list", "write")]

    def _run(self, what: str) -> None:
        with httpx.Client(base_url=self.admin, timeout=30) as client:
            n = 0
            while not self.done.is_set():
                n += 1
                if what == "status":
                    response = client.get("/status")
                elif what == "list":
                    response = client.get("/consumers")
                else:
                    response = client.post("/consumers", data={"username": f"{what}-{time.monotonic_ns()}-{n}"})
                self.seen[(what, response.status_code)] += 1
                if response.status_code == 500:
                    self.failures.append(f"{what}: {response.text}")
                if what == "status" and response.status_code == 200 and "database" not in response.json():
                    self.failures.append(f"status without a database section: {response.text}")

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)


def test_the_admin_api_answers_503_never_500_through_stops_and_restarts(tmp_path: Path, pg: PgInstance) -> None:
    settings = make_settings(tmp_path / "prefix", "postgres", pg_port=str(pg.port), pg_database="postgres",
                             pg_timeout="2")
    node = Node(settings)
    try:
        node.bootstrap()
        node.start()
        with Clients(node.admin) as clients:
            time.sleep(0.5)
            pg.stop("fast")          # shutting down: connections are terminated (57P01), then refused
            time.sleep(1.5)
            pg.start(wait=False)     # starting up: 57P03 until it accepts connections
            time.sleep(2.0)
            pg.stop("immediate")     # a crash: recovery at the next start
            time.sleep(0.5)
            pg.start(wait=True)
            time.sleep(1.5)
        assert not clients.failures, (clients.failures[:5], node.log())
        codes = {code for (_what, code) in clients.seen}
        assert codes <= {200, 201, 503}, clients.seen
        assert clients.seen[("write", 503)] and clients.seen[("status", 200)], clients.seen
        after = httpx.post(node.admin + "/consumers", data={"username": "after-the-restarts"}, timeout=30)
        assert after.status_code == 201, after.text
        assert httpx.get(node.admin + "/status", timeout=30).json()["database"] == {"reachable": True}
    finally:
        node.close()
