"""Response heads that repeat byte for byte are not parsed again (tollway.proxy.response_repeat).

Each scenario feeds the same reads to two connections: one as the proxy runs it, one that forgets
its kept head before every read, so llhttp parses everything. What they report to the client side
must be the same, event for event.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.proxy.test_upstream_pool import Transport as PoolTransport
from tollway.proxy.upstream import PoolKey, UpstreamConnection, UpstreamListener, UpstreamPool

KEY = PoolKey("http", "a.test", 80, True)
HEAD = b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
HOP = b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nVia: 1.1 up\r\nContent-Length: 2\r\n\r\n"


class Transport(PoolTransport):
    def abort(self) -> None:
        self.closed = True


class Recorder(UpstreamListener):
    """The client side of each exchange, as a log of what the upstream connection reported."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def upstream_head(self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.events.append(("head", status, list(headers), conn.content_length, conn.via, sorted(conn.hop_tokens)))
        headers.append((b"X-Added", b"by a plugin"))  # a header_filter changing the list in place

    def upstream_body(self, conn: UpstreamConnection, chunk: bytes) -> None:
        self.events.append(("body", chunk))

    def upstream_done(self, conn: UpstreamConnection, keep_alive: bool) -> None:
        self.events.append(("done", keep_alive))

    def upstream_failed(self, conn: UpstreamConnection, kind: str) -> None:
        self.events.append(("failed", kind))

    def upstream_tunnel(self, conn: UpstreamConnection, data: bytes) -> None:
        self.events.append(("tunnel", data))

    def upstream_write_paused(self, paused: bool) -> None:
        pass

    def upstream_fed(self, conn: UpstreamConnection) -> None:
        self.events.append(("fed",))


def run(reads: list[tuple[bool, bytes]], forget: bool) -> tuple[list[tuple[Any, ...]], int]:
    """Feed each read to one connection, a new exchange whenever the last one ended; (bool, bytes)
    is (the request was HEAD, what the upstream sent). Returns the events and the reads replayed."""
    async def scenario() -> tuple[list[tuple[Any, ...]], int]:
        pool = UpstreamPool(asyncio.get_running_loop(), 4, 60)
        conn = UpstreamConnection(pool, KEY)
        conn.connection_made(Transport())
        recorder = Recorder()
        replayed = 0
        for head_only, data in reads:
            if conn.exchange is None:
                if conn.closed:
                    recorder.events.append(("closed",))
                    break
                assert pool.take(KEY) in (conn, None)
                conn.begin(recorder, head_only, 60, 60)
                conn.request_sent()
            if forget:
                conn.repeats.kept = None
            kept = conn.repeats.kept
            begun = conn.messages_begun
            conn.data_received(data)
            replayed += kept is not None and conn.messages_begun == begun
        pool.close()
        return recorder.events, replayed

    return asyncio.run(scenario())


def same_as_parsed(reads: list[tuple[bool, bytes]]) -> int:
    """Assert both connections report the same; return how many reads were replayed."""
    events, replayed = run(reads, forget=False)
    parsed, none = run(reads, forget=True)
    assert none == 0
    assert events == parsed
    return replayed


def test_a_repeated_head_is_replayed_with_each_responses_own_body() -> None:
    reads = [(False, HEAD + b"ab"), (False, HEAD + b"cd"), (False, HEAD + b"ef"), (False, HEAD + b"gh")]
    assert same_as_parsed(reads) == 2  # the first is noted, the second kept
    events, _ = run(reads, forget=False)
    assert [event[1] for event in events if event[0] == "body"] == [b"ab", b"cd", b"ef", b"gh"]
    # The headers a plugin added to one response are not in the next.
    assert all((b"X-Added", b"by a plugin") not in event[2] for event in events if event[0] == "head")


@pytest.mark.parametrize("reads", [
    # The same head, then a body in two reads, then the head in a read of its own.
    [(False, HEAD + b"ab"), (False, HEAD + b"c"), (False, b"d"), (False, HEAD), (False, b"ef"), (False, HEAD + b"gh")],
    # A head begun in one read, then a read the size of a whole response.
    [(False, HEAD + b"ab"), (False, HEAD[:10]), (False, HEAD + b"ab")],
    # A read with more than the response: the rest is not part of a repeat.
    [(False, HEAD + b"ab"), (False, HEAD + b"abHTTP/1.1 200 OK\r\n")],
    # The head differs in one byte, in its length, in its Content-Length.
    [(False, HEAD + b"ab"), (False, HEAD.replace(b"up", b"uq") + b"ab"), (False, HEAD + b"ab"),
     (False, HEAD.replace(b"Server: up\r\n", b"") + b"ab"), (False, HEAD.replace(b": 2", b": 3") + b"abc"),
     (False, HEAD + b"ab")],
    # HEAD: the same head comes without its body, and is never replayed nor kept.
    [(False, HEAD + b"ab"), (True, HEAD), (False, HEAD + b"ab"), (True, HEAD), (True, HEAD), (False, HEAD + b"ab"),
     (True, HEAD + b"ab")],
    # A 100 Continue before the response, in the same read and in a read of its own.
    [(False, b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + b"ab"), (False, HEAD + b"cd"),
     (False, b"HTTP/1.1 100 Continue\r\n\r\n"), (False, HEAD + b"ef"), (False, HEAD + b"gh")],
    # Statuses without a body, an empty body, chunked and close-delimited responses.
    [(False, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")] * 3,
    [(False, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n")] * 3,
    [(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")] * 3,
    [(False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")] * 3,
    [(False, b"HTTP/1.1 200 OK\r\nServer: up\r\n\r\nab")] * 2,
    # Connection: close, keep-alive in HTTP/1.0, and hop-by-hop names listed in Connection.
    [(False, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab")] * 2,
    [(False, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nab")] * 2,
    [(False, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab")] * 3,
    [(False, HOP + b"ab")] * 3,
    # A kept head outlives responses that are not kept (chunked, HEAD), and their other headers.
    [(False, HOP + b"ab"), (False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
     (False, HOP + b"ab"), (True, HEAD), (False, HOP + b"ab")],
    # Broken repeats: what llhttp refuses is refused, however the head before it went.
    [(False, HEAD + b"ab"), (False, HEAD.replace(b"Content-Type", b"Content Type") + b"ab")],
    [(False, HEAD + b"ab"), (False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab")],
    # Upgrade.
    [(False, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
     (False, b"raw")],
], ids=["split", "partial-then-whole", "more", "differs", "head-request", "continue", "204", "304", "empty",
        "chunked", "until-close", "close", "http10", "http10-keep-alive", "hop-by-hop", "kept-across-others",
        "bad-name", "two-lengths", "upgrade"])
def test_every_response_reports_what_llhttp_parses(reads: list[tuple[bool, bytes]]) -> None:
    same_as_parsed(reads)


def test_only_plain_keep_alive_responses_with_a_length_are_replayed() -> None:
    plain = [(False, HEAD + b"ab")] * 3
    assert same_as_parsed(plain) == 1
    hop = [(False, b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nab")] * 3
    assert same_as_parsed(hop) == 1
    # A head seen once, then another: nothing is kept until one comes twice in a row.
    assert same_as_parsed([(False, HEAD + b"ab"), (False, HOP + b"ab"), (False, HEAD + b"ab"), (False, HOP + b"ab"),
                           (False, HOP + b"ab"), (False, HOP + b"ab")]) == 1
    for never in ([(False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")] * 3,
                  [(False, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")] * 3,
                  [(False, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab")] * 2,
                  [(True, HEAD)] * 3):
        assert same_as_parsed(never) == 0


def test_kept_heads_share_their_header_lines_in_a_bounded_table() -> None:
    from tollway.proxy import response_repeat

    heads = [(False, HEAD.replace(b"up", b"up-%d" % number) + b"ab") for number in range(5000) for _ in range(2)]
    events, replayed = run(heads + heads[-1:], forget=False)
    assert replayed == 1 and len(events) == 3 * len(heads) + 3
    assert 0 < len(response_repeat._SHARED_LINES) <= response_repeat._SHARED_MAX
    assert (b"Server", b"up-4999") in response_repeat._SHARED_LINES


def test_connections_keeping_equal_heads_share_one_object_per_header_line() -> None:
    # The client side compares each response's headers with the last ones it joined: equal lines
    # from any connection must be the same objects, so that this is an identity check.
    async def scenario() -> list[UpstreamConnection]:
        pool = UpstreamPool(asyncio.get_running_loop(), 4, 60)
        conns = []
        for _ in range(2):
            conn = UpstreamConnection(pool, KEY)
            conn.connection_made(Transport())
            for _ in range(2):
                conn.begin(Recorder(), False, 60, 60)
                conn.request_sent()
                conn.data_received(HEAD + b"ab")
            conns.append(conn)
        pool.close()
        return conns

    first, second = asyncio.run(scenario())
    first_kept, second_kept = first.repeats.kept, second.repeats.kept
    assert first_kept is not None and second_kept is not None and first_kept is not second_kept
    assert len(first_kept.headers) == 2
    assert all(a is b for a, b in zip(first_kept.headers, second_kept.headers, strict=True))
