"""Upstream failures answered as Kong does, retries, client aborts, metering, and drain."""

from __future__ import annotations

import asyncio
import socket
import time

from tests.conftest import free_port
from tests.proxy.conftest import plugin, raw_exchange, read_head, request, route, service, snapshot


def one_route(proxy, svc, path="/"):
    proxy.apply(snapshot([svc], [route(svc, [path], name="r")], plugins=[plugin("billable")]))


def test_read_timeout_answers_504(proxy, echo_upstream, recorder):
    one_route(proxy, service(echo_upstream, read_timeout=100))
    started = time.monotonic()
    resp = request(proxy.port, "GET", "/delay/2000")
    assert resp.status == 504
    assert resp.json() == {"message": "The upstream server is timed out"}
    assert time.monotonic() - started < 1.5
    assert [m["status"] for m in recorder.metered] == [504]


def test_refused_connections_answer_503_after_retries(proxy, recorder):
    one_route(proxy, service(free_port(), retries=3))
    resp = request(proxy.port, "POST", "/x", body=b"payload")
    assert resp.status == 503
    assert "refused" in resp.json()["message"]
    assert [m["status"] for m in recorder.metered] == [503]


def test_retries_reach_an_upstream_that_comes_up(proxy, raw_upstreams):
    attempts = []

    async def flaky(reader, writer):
        attempts.append(1)
        await read_head(reader)
        if len(attempts) == 1:
            return  # close without answering: a stale keep-alive connection
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
    upstream = raw_upstreams(flaky)
    one_route(proxy, service(upstream.port))
    assert request(proxy.port, "GET", "/").body == b"ok"
    assert len(attempts) == 2


def test_non_idempotent_request_whose_body_was_sent_is_not_retried(proxy, raw_upstreams):
    attempts = []

    async def drop(reader, writer):
        attempts.append(1)
        await read_head(reader)
        await reader.readexactly(4)
    upstream = raw_upstreams(drop)
    one_route(proxy, service(upstream.port))
    resp = request(proxy.port, "POST", "/", body=b"once")
    assert resp.status == 502
    assert len(attempts) == 1


def test_garbage_from_the_upstream_answers_502(proxy, raw_upstreams, recorder):
    async def garbage(reader, writer):
        await read_head(reader)
        writer.write(b"this is not http\r\n\r\n")
        await writer.drain()
    one_route(proxy, service(raw_upstreams(garbage).port))
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 502
    assert resp.json() == {"message": "An invalid response was received from the upstream server"}
    assert [m["status"] for m in recorder.metered] == [502]


def test_upstream_failing_mid_response_closes_the_client_connection(proxy, raw_upstreams, recorder):
    async def partial(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
    one_route(proxy, service(raw_upstreams(partial).port))
    raw = raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"only part")  # then closed
    time.sleep(0.05)
    assert len(recorder.metered) == 1
    assert recorder.metered[0]["status"] == 200
    assert recorder.metered[0]["response_bytes"] == len(raw)


def test_client_abort_mid_response_is_metered_once(proxy, raw_upstreams, recorder):
    async def slow(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(2)
    one_route(proxy, service(raw_upstreams(slow).port))
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while len(received) < 1000:
            received += sock.recv(65536)
    deadline = time.monotonic() + 2
    while not recorder.metered and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    assert len(recorder.metered) == 1
    assert recorder.metered[0]["status"] == 200
    assert recorder.metered[0]["response_bytes"] == len(received)


def test_meter_sees_exact_bytes_for_bodies_both_ways(proxy, echo_upstream, recorder):
    one_route(proxy, service(echo_upstream))
    raw = raw_exchange(proxy.port, b"POST /bytes/5000 HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n"
                                   b"Connection: close\r\n\r\n" + b"y" * 300)
    assert raw.endswith(b"x" * 5000)
    head = b"POST /bytes/5000 HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\nConnection: close\r\n\r\n"
    time.sleep(0.05)
    assert recorder.metered == [{"status": 200, "request_bytes": len(head) + 300, "response_bytes": len(raw),
                                 "path": "/bytes/5000", "consumer": None, "route": "r"}]


def test_drain_lets_an_in_flight_request_finish_and_closes_idle_connections(proxy, echo_upstream):
    one_route(proxy, service(echo_upstream))
    idle = socket.create_connection(("127.0.0.1", proxy.port))
    idle.sendall(b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b"\r\n\r\nx"):
        first += idle.recv(4096)
    busy = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    busy.sendall(b"GET /delay/300 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    drained = proxy.drain_async(5)
    assert idle.recv(4096) == b""  # the idle keep-alive connection is closed
    data = b""
    while True:
        chunk = busy.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
    drained.result(5)
    assert proxy.stats["connections_active"] == 0
    try:
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        accepting = True
    except OSError:
        accepting = False
    # The listening socket belongs to the worker; asyncio stops accepting but the kernel may still queue.
    assert accepting in (True, False)
    idle.close()
    busy.close()
