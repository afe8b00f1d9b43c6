"""Upstream failures answered as Kong does, retries, client aborts, metering, and drain."""

from __future__ import annotations

import asyncio
import socket
import struct
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


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def _keep_alive_connection(port: int) -> socket.socket:
    """A client connection that has had one response and is now idle, kept alive."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b"\r\n\r\nx"):
        first += conn.recv(4096)
    return conn


def test_drain_lets_an_in_flight_request_finish_and_closes_idle_connections(proxy, echo_upstream):
    one_route(proxy, service(echo_upstream))
    idle = _keep_alive_connection(proxy.port)
    busy = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    busy.sendall(b"GET /delay/300 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    started = time.monotonic()
    drained = proxy.drain_async(5)
    data = _read_until_closed(busy)
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
    assert idle.recv(4096) == b""  # the idle keep-alive connection is closed after the drain's grace
    assert time.monotonic() - started < 3
    drained.result(5)
    assert proxy.stats["connections_active"] == 0
    idle.close()
    busy.close()


def test_drain_answers_a_request_sent_on_an_idle_connection_as_it_starts(proxy, echo_upstream):
    # A client reusing a keep-alive connection cannot know the worker began draining; closing the
    # connection under it would lose the request it is sending.
    one_route(proxy, service(echo_upstream))
    conns = [_keep_alive_connection(proxy.port) for _ in range(3)]
    drained = proxy.drain_async(5)
    time.sleep(0.05)
    for conn in conns:
        conn.sendall(b"GET /bytes/2 HTTP/1.1\r\nHost: x\r\n\r\n")
    for conn in conns:
        data = _read_until_closed(conn)
        assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data and data.endswith(b"xx")
        conn.close()
    drained.result(5)
    assert proxy.stats["connections_active"] == 0
    assert proxy.stats["timeouts"] == 0


def test_a_retried_request_sends_its_whole_body_once_on_every_attempt(proxy, raw_upstreams, recorder):
    bodies = []

    async def stale_twice(reader, writer):
        _, headers = await read_head(reader)
        if "content-length" not in headers and len(bodies) < 5:
            bodies.append(None)
            return  # gone before the body: the retry must send all of it, once
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if not size:
                    break
                body += chunk[:-2]
        bodies.append(body)
        if len(bodies) not in (3, 6):
            return  # closed without a word: as a stale keep-alive connection, so retried
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
    one_route(proxy, service(raw_upstreams(stale_twice).port, retries=5))
    assert request(proxy.port, "PUT", "/", body=b"0123456789" * 100).body == b"0123456789" * 100
    assert bodies == [b"0123456789" * 100] * 3
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"3\r\nabc\r\n")
        time.sleep(0.1)  # the first attempt fails with only part of the body sent
        sock.sendall(b"3\r\ndef\r\n0\r\n\r\n")
        raw = b""
        while chunk := sock.recv(4096):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"abcdef")
    assert bodies[3:] == [None, None, b"abcdef"]
    assert [m["status"] for m in recorder.metered] == [200, 200]


def _reset(writer) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_upstream_reset_before_answering_answers_502(proxy, raw_upstreams, recorder):
    async def reset(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 2")
        await writer.drain()
        _reset(writer)
    one_route(proxy, service(raw_upstreams(reset).port, retries=0))
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 502
    assert resp.json() == {"message": "An invalid response was received from the upstream server"}
    assert [m["status"] for m in recorder.metered] == [502]


def test_upstream_reset_mid_response_closes_the_client_without_a_complete_response(
        proxy, raw_upstreams, recorder):
    async def reset(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        _reset(writer)
    one_route(proxy, service(raw_upstreams(reset).port))
    raw = raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"5\r\nhello\r\n")  # no last chunk: closed
    time.sleep(0.05)
    assert [(m["status"], m["response_bytes"]) for m in recorder.metered] == [(200, len(raw))]


def test_chunked_upstream_closing_early_closes_the_client_without_the_last_chunk(proxy, raw_upstreams, recorder):
    async def early(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab")
        await writer.drain()
    one_route(proxy, service(raw_upstreams(early).port))
    raw = raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert raw.startswith(b"HTTP/1.1 200") and not raw.endswith(b"0\r\n\r\n")
    time.sleep(0.05)
    assert [m["status"] for m in recorder.metered] == [200]


def test_upstream_trickling_slower_than_read_timeout_closes_the_client(proxy, raw_upstreams, recorder):
    async def trickle(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for byte in b"0123456789":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05 if byte < ord("3") else 1.0)
    one_route(proxy, service(raw_upstreams(trickle).port, read_timeout=300))
    started = time.monotonic()
    raw = raw_exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"\r\n\r\n0123")  # then closed
    assert time.monotonic() - started < 1.0
    time.sleep(0.05)
    assert [(m["status"], m["response_bytes"]) for m in recorder.metered] == [(200, len(raw))]


def test_upstream_trickling_within_read_timeout_is_not_cut(proxy, raw_upstreams):
    async def trickle(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
    one_route(proxy, service(raw_upstreams(trickle).port, read_timeout=300))
    assert request(proxy.port, "GET", "/").body == b"abcdef"  # 0.6 s in all, 0.1 s between bytes


def test_upstream_silent_after_the_request_answers_504(proxy, raw_upstreams, recorder):
    async def silent(reader, writer):
        await read_head(reader)
        await asyncio.sleep(2)
    one_route(proxy, service(raw_upstreams(silent).port, read_timeout=200, retries=0))
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 504
    assert resp.json() == {"message": "The upstream server is timed out"}
    assert [m["status"] for m in recorder.metered] == [504]


def test_the_write_timeout_runs_from_when_the_upstream_stops_reading():
    """A body that starts slowly, then an upstream that reads nothing: the write timeout (0.5 s) runs
    from the pause, not from a read timeout (3 s) armed earlier on the connection."""
    from tollway.proxy.upstream import PoolKey, UpstreamListener, UpstreamPool

    class Exchange(UpstreamListener):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.paused_at: float | None = None
            self.result: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()

        def upstream_failed(self, conn, kind):
            self.result.set_result((kind, time.monotonic() - self.started))

        def upstream_done(self, conn, keep_alive):
            self.result.set_result(("done", time.monotonic() - self.started))

        def upstream_write_paused(self, paused):
            if paused and self.paused_at is None:
                self.paused_at = time.monotonic() - self.started

        def upstream_head(self, *args): ...
        def upstream_body(self, *args): ...
        def upstream_tunnel(self, *args): ...
        def upstream_fed(self, conn): ...

    async def scenario() -> tuple[str, float, float]:
        held = []

        async def never_reads(reader, writer):
            held.append(writer)
            await asyncio.sleep(30)

        server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(asyncio.get_running_loop(), 4, 60)
        conn = await pool.connect(PoolKey("http", "127.0.0.1", port, True), 5)
        conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        exchange = Exchange()
        conn.begin(exchange, False, 3.0, 0.5)
        conn.write(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.6)
        conn.write(b"%x\r\n" % (32 << 20) + b"x" * (32 << 20))
        kind, at = await asyncio.wait_for(exchange.result, 10)
        conn.abort()
        for writer in held:
            writer.transport.abort()
        server.close()
        assert exchange.paused_at is not None
        return kind, at, exchange.paused_at

    kind, at, paused_at = asyncio.run(scenario())
    assert kind == "timeout"
    assert 0.45 <= at - paused_at < 1.2
