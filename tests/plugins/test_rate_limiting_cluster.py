"""rate-limiting with the cluster policy: counters on the database every node shares, exact.

The decision itself, on SQLite and PostgreSQL: two databases' clients (two nodes) deciding
hundreds of calls at once admit exactly the limit. A node of two workers on SQLite (its master
keeps one connection for the decisions) admits exactly the limit. Then real processes on one
PostgreSQL schema:
two nodes of two workers admit exactly N of hundreds of concurrent calls; windows fill exactly and
reset at each boundary under load; the database cut off mid-load (a TCP relay to PostgreSQL
stopped) is served through with fault_tolerant, or answered 500 without."""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tests.plugins.rate_limiting_load import Answer, hammer, limit_on_mock, load_while, wait_for_room
from tests.server.nodes import Node
from tests.server.test_metering_e2e import seed
from tollway.config import Settings
from tollway.plugins.rate_limiting.cluster import ClusterPolicy, ClusterUnavailable, address
from tollway.plugins.rate_limiting.cluster_service import counters_table, decide, meta
from tollway.store.db import Database

LIMIT = 60
TRIES = 300
CLIENTS = 200


def test_concurrent_decisions_of_two_nodes_admit_exactly_the_limit(settings: Settings) -> None:
    async def run() -> list[tuple[bool, list[int]]]:
        nodes = [Database.from_settings(settings) for _ in range(2)]
        try:
            async with nodes[0].begin() as conn:
                await conn.run_sync(meta.create_all)
            end = int(time.time()) + 3600
            call = [["plugin-1", "hour", "poppy", end, LIMIT], ["plugin-1", "day", "poppy", end + 1, LIMIT * 2]]
            # batches of 1 to 7 calls, from both nodes at once (one remembering the rows it made)
            known: set[Any] = set()
            batches = [nodes[i % 2] for i in range(80)]
            results = await asyncio.gather(*(decide(db, [call] * (1 + i % 7), known if i % 2 else None)
                                             for i, db in enumerate(batches)))
            return [answer for batch in results for answer in batch]
        finally:
            for db in nodes:
                await db.dispose()

    answers = asyncio.run(run())
    admitted = [counts for ok, counts in answers if ok]
    assert len(answers) > LIMIT and len(admitted) == LIMIT
    assert sorted(counts[0] for counts in admitted) == list(range(1, LIMIT + 1))  # each unit once
    assert all(counts == [LIMIT, LIMIT] for ok, counts in answers if not ok)  # a refusal consumed nothing


def test_a_row_gone_since_a_node_made_it_is_made_again(settings: Settings) -> None:
    async def run() -> list[tuple[bool, list[int]]]:
        db = Database.from_settings(settings)
        try:
            async with db.begin() as conn:
                await conn.run_sync(meta.create_all)
            known: set[Any] = set()
            call = [["plugin-1", "minute", "poppy", int(time.time()) + 60, 2]]
            answers = await decide(db, [call, call, call], known)
            async with db.begin() as conn:
                await conn.execute(counters_table.delete())
            return answers + await decide(db, [call], known)
        finally:
            await db.dispose()

    assert asyncio.run(run()) == [(True, [1]), (True, [2]), (False, [2]), (True, [1])]


def test_the_worker_asks_its_master_and_a_long_identity_goes_as_its_digest(tmp_path: Path) -> None:
    received: list[Any] = []

    async def master(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = orjson.loads(line)
            received.append(request["c"])
            writer.write(orjson.dumps({"i": request["i"], "a": True, "n": [7]}) + b"\n")

    async def run() -> tuple[Any, Any]:
        ClusterPolicy.prefix = str(tmp_path / "no-master")
        policy = ClusterPolicy("plugin-1", ("minute",))
        with pytest.raises(ClusterUnavailable, match="not reachable"):
            await policy.take("poppy", [120], [10])
        ClusterPolicy.prefix = str(tmp_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address(str(tmp_path)))
        server = await asyncio.start_unix_server(master, sock=sock)
        try:
            return await asyncio.gather(policy.take("x" * 5000, [120], [10]), policy.take("poppy", [120], [10]))
        finally:
            server.close()

    assert asyncio.run(run()) == [(True, [7]), (True, [7])]
    long_one, short_one = (counters[0][2] for counters in received)
    assert long_one.startswith("blake2b:") and len(long_one) < 200 and short_one == "poppy"
    assert received[1] == [["plugin-1", "minute", "poppy", 120, 10]]


class Relay:
    """A TCP relay to PostgreSQL that the test can cut: the node's database 'goes away'."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self.open = False
        try:  # wakes the accepting thread (a close alone would leave its accept() taking calls)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def _nodes(settings: Settings, tmp_path: Path, count: int, workers: int) -> list[Node]:
    return [Node(settings.with_overrides(prefix=str(tmp_path / f"node{i}"), workers=workers,
                                         proxy_listen=f"127.0.0.1:{free_port()}",
                                         admin_listen=f"127.0.0.1:{free_port()}")) for i in range(count)]


@pytest.fixture
def two_nodes(pg_settings: Settings, tmp_path: Path, echo_upstream: int) -> Iterator[list[Node]]:
    nodes = _nodes(pg_settings, tmp_path, 2, workers=2)
    nodes[0].bootstrap()
    try:
        for node in nodes:
            node.start()
        seed(nodes[0], f"http://127.0.0.1:{echo_upstream}")
        yield nodes
    finally:
        for node in nodes:
            node.close()


@pytest.fixture
def relay(pg_settings: Settings) -> Iterator[Relay]:
    r = Relay((pg_settings.pg_host, pg_settings.pg_port))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def relayed_node(pg_settings: Settings, relay: Relay, tmp_path: Path, echo_upstream: int) -> Iterator[Node]:
    settings = pg_settings.with_overrides(pg_port=relay.port, pg_timeout=1.0)
    node = _nodes(settings, tmp_path, 1, workers=1)[0]
    node.bootstrap()
    try:
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        yield node
    finally:
        node.close()



def test_two_nodes_of_two_workers_admit_exactly_the_limit(two_nodes: list[Node]) -> None:
    limit_on_mock(two_nodes, {"policy": "cluster", "hour": LIMIT, "day": LIMIT * 10})
    wait_for_room(3600, 30)
    started = time.monotonic()
    answers = hammer([node.proxy for node in two_nodes], "/mock/requests", TRIES, CLIENTS,
                     {"apikey": "poppy-secret"})
    took = time.monotonic() - started
    assert collections.Counter(a.status for a in answers) == {200: LIMIT, 429: TRIES - LIMIT}
    admitted = [a for a in answers if a.status == 200]
    assert sorted(int(a.headers["X-RateLimit-Remaining-Hour"]) for a in admitted) == list(range(LIMIT))
    refused = next(a for a in answers if a.status == 429)
    assert refused.json() == {"message": "API rate limit exceeded"}
    assert refused.headers["X-RateLimit-Remaining-Hour"] == "0" and int(refused.headers["Retry-After"]) > 0
    # both nodes decided calls, and the refusals consumed nothing: the day counts only the admitted
    status = [node.json("/status")["rate-limiting-cluster"] for node in two_nodes]
    assert all(s["decided"] > 0 for s in status) and sum(s["admitted"] for s in status) == LIMIT + 2
    again = httpx.get(two_nodes[1].proxy + "/mock/requests", headers={"apikey": "poppy-secret"})
    assert again.status_code == 429 and again.headers["X-RateLimit-Remaining-Day"] == str(LIMIT * 10 - LIMIT)
    print(f"{TRIES} calls from {CLIENTS} clients over 2 nodes in {took:.2f} s")


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_node_of_two_workers_on_sqlite_admits_exactly_the_limit(settings: Settings, tmp_path: Path,
                                                                   echo_upstream: int) -> None:
    node = _nodes(settings, tmp_path, 1, workers=2)[0]  # its master decides on one connection it keeps
    node.bootstrap()
    try:
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        limit_on_mock([node], {"policy": "cluster", "hour": LIMIT})
        wait_for_room(3600, 30)
        answers = hammer([node.proxy], "/mock/requests", TRIES, CLIENTS, {"apikey": "poppy-secret"})
        assert collections.Counter(a.status for a in answers) == {200: LIMIT, 429: TRIES - LIMIT}
        admitted = [a for a in answers if a.status == 200]
        assert sorted(int(a.headers["X-RateLimit-Remaining-Hour"]) for a in admitted) == list(range(LIMIT))
        status = node.json("/status")["rate-limiting-cluster"]
        # limit_on_mock's own call, which checked that the workers had the plugin, counts too
        assert (status["decided"], status["admitted"], status["database_failures"]) == (TRIES + 1, LIMIT + 1, 0)
    finally:
        node.close()


def test_windows_fill_exactly_then_reset_at_each_boundary(two_nodes: list[Node]) -> None:
    per_second = 5
    limit_on_mock(two_nodes, {"policy": "cluster", "second": per_second}, header="X-RateLimit-Limit-Second")
    answers: list[Answer] = []
    stop = threading.Event()
    load = threading.Thread(target=hammer, args=([node.proxy for node in two_nodes], "/mock/requests", 0, 32),
                            kwargs={"headers": {"apikey": "poppy-secret"}, "stop": stop, "answers": answers})
    load.start()
    try:  # until three windows filled (and so two boundaries were crossed under load)
        two_nodes[0].wait_until(lambda: sum(1 for a in list(answers) if a.status == 200
                                            and a.headers["X-RateLimit-Remaining-Second"] == "0") >= 3,
                                timeout=20, what="three full windows")
    finally:
        stop.set()
        load.join(30)
    assert {a.status for a in answers} == {200, 429}
    # In each window the admitted calls see remaining = limit-1, limit-2, ...: so how often a value
    # was seen counts the windows that admitted that many calls (no value twice in a window).
    seen = collections.Counter(int(a.headers["X-RateLimit-Remaining-Second"]) for a in answers if a.status == 200)
    windows, full = seen[per_second - 1], seen[0]
    assert set(seen) <= set(range(per_second))
    assert [seen[v] for v in range(per_second - 1, -1, -1)] == sorted(seen.values(), reverse=True)
    assert full >= 3
    assert sum(seen.values()) <= per_second * windows



def test_database_cut_off_mid_load_is_served_through_when_fault_tolerant(relayed_node: Node, relay: Relay) -> None:
    limit_on_mock([relayed_node], {"policy": "cluster", "hour": 1_000_000, "fault_tolerant": True})
    answers, stopped = load_while(relayed_node, relay.stop, 2.0)
    assert {a.status for a in answers} == {200}
    before = [a for a in answers if a.received < stopped]
    after = [a for a in answers if a.sent > stopped + 1.0]
    assert before and after
    assert all("X-RateLimit-Remaining-Hour" in a.headers for a in before)
    assert not any("X-RateLimit-Remaining-Hour" in a.headers for a in after)  # served without limits
    relayed_node.wait_until(lambda: relayed_node.json("/status").get("rate-limiting", {}).get("failing") is True,
                            timeout=5, what="GET /status saying the counters fail")
    assert relayed_node.json("/status")["rate-limiting-cluster"]["database_failures"] > 0
    log = relayed_node.log_path.read_text()
    assert "the cluster's counters failed" in log and "fault_tolerant" in log
    assert log.count("rate-limiting cluster: the database failed") == 1  # once every 10 seconds at most


def test_database_cut_off_mid_load_answers_500_when_not_fault_tolerant(relayed_node: Node, relay: Relay) -> None:
    limit_on_mock([relayed_node], {"policy": "cluster", "hour": 1_000_000, "fault_tolerant": False})
    answers, stopped = load_while(relayed_node, relay.stop, 2.0)
    after = [a for a in answers if a.sent > stopped + 1.0]
    assert after and {a.status for a in after} == {500}
    assert after[0].json() == {"message": "An unexpected error occurred"}
    assert {a.status for a in answers if a.received < stopped} <= {200}
