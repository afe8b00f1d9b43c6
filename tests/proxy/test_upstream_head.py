"""An upstream's response head is bounded by upstream_max_header_size.

A head over the limit (many lines, or one line that never ends) fails the exchange as an invalid
response: the client gets Kong's 502 and none of the upstream's head, the upstream connection is
closed, and one warning names the upstream and the limit. The limit is per response; a body is
never counted.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time

import pytest

from tests.proxy.conftest import exchange, plugin, read_head, request, route, service, snapshot

INVALID = {"message": "An invalid response was received from the upstream server"}
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def one_route(proxy, upstream_port):
    svc = service(upstream_port, retries=0)
    proxy.apply(snapshot([svc], [route(svc, ["/"], name="r")], plugins=[plugin("billable")]))


def filler_head(size: int) -> bytes:
    """A complete 200 response head of exactly `size` bytes, in 100-byte header lines, for a 2-byte body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    lines = []
    number = 0
    while len(head) + sum(map(len, lines)) + 2 + 100 <= size:
        lines.append(b"X-Filler-%04d: " % number + b"f" * 83 + b"\r\n")  # 100 bytes
        number += 1
    rest = size - len(head) - sum(map(len, lines)) - 2
    if rest:
        assert rest >= 6
        lines.append(b"X-L: " + b"f" * (rest - 7) + b"\r\n")
    head += b"".join(lines) + b"\r\n"
    assert len(head) == size
    return head


async def write_in_pieces(writer: asyncio.StreamWriter, data: bytes, piece: int = 512) -> None:
    """Write `data` a piece at a time, pausing so that the proxy reads them one by one."""
    for start in range(0, len(data), piece):
        writer.write(data[start:start + piece])
        await writer.drain()
        await asyncio.sleep(0.002)


class OversizedUpstream:
    """Answers one request with `head` (written as told), then records whether the proxy hung up."""

    def __init__(self, raw_upstreams, head: bytes, pieces: bool) -> None:
        self.head = head
        self.pieces = pieces
        self.closed = False
        self.port = raw_upstreams(self._serve).port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        try:
            if self.pieces:
                await write_in_pieces(writer, self.head)
            else:
                writer.write(self.head)
                await writer.drain()
            self.closed = await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionError:
            self.closed = True


def assert_502_without_the_upstream_head(raw: bytes) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 ")
    assert json.loads(body) == INVALID
    assert b"X-Filler" not in raw and b"X-Endless" not in raw and b"fffff" not in raw


MANY_LINES = filler_head(8192)
ENDLESS_LINE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Endless: " + b"f" * (64 << 10)


@pytest.mark.parametrize(("head", "pieces"), [
    (MANY_LINES, True),        # many header lines, over several reads
    (MANY_LINES, False),       # many header lines, complete in one read
    (ENDLESS_LINE, True),      # one header line that never ends
], ids=["many-lines-in-pieces", "many-lines-at-once", "one-endless-line"])
def test_a_head_over_the_limit_answers_502_and_closes_the_upstream(make_proxy, raw_upstreams, recorder, caplog,
                                                                    head, pieces):
    proxy = make_proxy(upstream_max_header_size="4k")
    upstream = OversizedUpstream(raw_upstreams, head, pieces)
    one_route(proxy, upstream.port)
    with caplog.at_level(logging.WARNING, logger="tollway.proxy"):
        raw, _ = exchange(proxy.port, GET)
    assert_502_without_the_upstream_head(raw)
    assert [m["status"] for m in recorder.metered] == [502]
    deadline = time.monotonic() + 5
    while not upstream.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.closed
    warnings = [r for r in caplog.records if "upstream_max_header_size" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert f"127.0.0.1:{upstream.port}" in warnings[0].getMessage() and "4096" in warnings[0].getMessage()
    assert "fffff" not in caplog.text


def test_the_default_limit_is_64k(make_proxy, raw_upstreams):
    proxy = make_proxy()
    upstream = OversizedUpstream(raw_upstreams, filler_head(80 << 10), pieces=False)
    one_route(proxy, upstream.port)
    raw, _ = exchange(proxy.port, GET)
    assert_502_without_the_upstream_head(raw)


def test_zero_means_no_limit(make_proxy, raw_upstreams):
    proxy = make_proxy(upstream_max_header_size="0")
    head = filler_head(96 << 10)

    async def big_head(reader, writer):
        await read_head(reader)
        await write_in_pieces(writer, head + b"ok", piece=8192)
    one_route(proxy, raw_upstreams(big_head).port)
    raw, _ = exchange(proxy.port, GET)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\nok")
    assert raw.count(b"X-Filler-") == head.count(b"X-Filler-")


@pytest.mark.parametrize("pieces", [True, False], ids=["in-pieces", "at-once"])
def test_a_head_of_exactly_the_limit_is_proxied(make_proxy, raw_upstreams, pieces):
    proxy = make_proxy(upstream_max_header_size="4k")
    head = filler_head(4096)

    async def at_the_limit(reader, writer):
        await read_head(reader)
        if pieces:
            await write_in_pieces(writer, head)
            writer.write(b"ok")
        else:
            writer.write(head + b"ok")
        await writer.drain()
    one_route(proxy, raw_upstreams(at_the_limit).port)
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 200 and resp.body == b"ok"
    fillers = [name for name, _ in resp.header_list if name.lower().startswith("x-filler-")]
    assert len(fillers) == head.count(b"X-Filler-")


def test_the_limit_is_per_response_on_a_kept_alive_upstream_connection(make_proxy, raw_upstreams):
    proxy = make_proxy(upstream_max_header_size="4k")
    head = filler_head(3072)  # two of them are over the limit

    async def keep_alive(reader, writer):
        for _ in range(3):
            await read_head(reader)
            await write_in_pieces(writer, head)
            writer.write(b"ok")
            await writer.drain()
    upstream = raw_upstreams(keep_alive)
    one_route(proxy, upstream.port)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"ok"
    finally:
        conn.close()
    assert upstream.connections == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_big_body_after_a_small_head_is_not_counted(make_proxy, raw_upstreams, chunked):
    proxy = make_proxy(upstream_max_header_size="1k")
    body = bytes(range(256)) * 4096  # 1 MiB

    async def big_body(reader, writer):
        await read_head(reader)
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(body), 65536):
                writer.write(b"%x\r\n%s\r\n" % (65536, body[start:start + 65536]))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            await write_in_pieces(writer, body, piece=65536)
        await writer.drain()
    one_route(proxy, raw_upstreams(big_body).port)
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 200 and resp.body == body
