"""The Admin API bounds what clients hold: head and body time, idle keep-alive, connections, sizes.

A real node; raw sockets play the slow, silent and greedy clients.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server.nodes import Node, node_env, running
from tests.server.test_metering_e2e import KEYS, Load, seed, wait_for_totals
from tollway.config import Settings


@pytest.fixture
def node(sqlite_settings: Settings) -> Iterator[Node]:
    with running(sqlite_settings.with_overrides(admin_header_timeout=1.0, admin_body_timeout=1.0,
                                                admin_keepalive_timeout=1.0, admin_max_connections=20,
                                                admin_max_body_size=1024)) as n:
        yield n


def _connect(node: Node) -> socket.socket:
    host, _, port = node.settings.admin_listen.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_silent_client_and_a_slow_head_are_closed_after_the_header_timeout(node: Node) -> None:
    silent, slow = _connect(node), _connect(node)
    started = time.monotonic()
    slow.sendall(b"GET /status HTTP/1.1\r\n")
    time.sleep(0.6)
    slow.sendall(b"Host: x\r\n")  # a byte now and then does not buy more time
    assert _answer(slow).startswith(b"HTTP/1.1 408")
    answer = _answer(silent)
    assert answer.startswith(b"HTTP/1.1 408") and answer.endswith(b'{"message":"Request timeout"}'), answer
    assert time.monotonic() - started < 5


def test_a_body_that_pauses_too_long_is_refused(node: Node) -> None:
    sock = _connect(node)
    sock.sendall(b"POST /consumers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 30\r\n\r\n{")
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert httpx.get(node.admin + "/consumers", timeout=10).json()["data"] == []


def test_an_idle_keepalive_connection_is_closed(node: Node) -> None:
    sock = _connect(node)
    sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 200") and 0.5 < time.monotonic() - started < 5


def test_bodies_over_the_limit_are_answered_413_in_kongs_shape(node: Node) -> None:
    big = httpx.post(node.admin + "/consumers", json={"username": "x" * 2000}, timeout=10)
    assert big.status_code == 413 and big.json() == {"message": "Request size limit exceeded"}
    sock = _connect(node)
    sock.sendall(b"POST /consumers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Type: application/json\r\n\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"10\r\n" + b"y" * 16)
    assert _answer(sock).startswith(b"HTTP/1.1 413")
    assert httpx.post(node.admin + "/consumers", json={"username": "small"}, timeout=10).status_code == 201


def test_connections_over_the_limit_are_closed_and_the_rest_keep_working(node: Node) -> None:
    held = [_connect(node) for _ in range(20)]
    time.sleep(0.2)
    extra = _connect(node)
    extra.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert _answer(extra) == b""  # closed without an answer
    except ConnectionResetError:
        pass
    for sock in held:
        sock.close()
    time.sleep(0.2)
    assert httpx.get(node.admin + "/status", timeout=10).status_code == 200


def test_thousands_of_idle_clients_leave_the_flusher_its_descriptors(sqlite_settings: Settings,
                                                                     echo_upstream: int) -> None:
    """The master at 400 descriptors, 3,000 connections held against its Admin API: usage still lands."""
    settings = sqlite_settings.with_overrides(admin_header_timeout=30.0)
    node = Node(settings)
    node.bootstrap()
    log = open(node.log_path, "ab")
    node.proc = subprocess.Popen(["prlimit", "--nofile=400:400", sys.executable, "-m", "tollway", "start"],
                                 env=node_env(settings), stdout=log, stderr=log)
    try:
        node.wait_until(lambda: _status_ok(node), timeout=30, what="the node started")
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        held = []
        for _ in range(3000):
            try:
                held.append(_connect(node))
            except OSError:
                break
        assert len(held) == 3000
        with Load(node, KEYS, threads_per_key=1) as load:
            time.sleep(2.0)
        # Read from the SQLite file itself: the Admin API has no connection left to answer with.
        node.wait_until(lambda: _ledger_total(settings) == sum(load.received.values()), timeout=30,
                        what="every call in the ledger while clients hold the Admin API's connections")
        for sock in held:
            sock.close()
        wait_for_totals(node, +load.received, timeout=30)
    finally:
        node.close()


def _ledger_total(settings: Settings) -> int:
    with sqlite3.connect(settings.database_path) as db:
        row = db.execute("SELECT COALESCE(SUM(requests), 0) FROM billable_usage u JOIN routes r ON r.id = u.route_id "
                         "WHERE grain = 'minute' AND r.name = 'mock'").fetchone()
    return int(row[0])


def _status_ok(node: Node) -> bool:
    try:
        return httpx.get(node.admin + "/status", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
