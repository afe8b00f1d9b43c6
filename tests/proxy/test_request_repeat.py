"""Request heads that repeat byte for byte but for their target are not parsed again
(tollway.proxy.request_repeat).

Each scenario sends the same reads, one connection each time, to a proxy as it runs, and to one
whose connections forget their kept head before every read, so llhttp parses everything. The
upstream must receive the same bytes and the client the same answers.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.proxy.conftest import RecordingUpstream, plugin, read_until_close, route, service, snapshot
from tollway.plugins.base import Handler
from tollway.proxy import chain as chain_module

HEADERS = b"Host: api.test\r\nUser-Agent: t/1\r\nAccept: */*\r\nX-Key: k1\r\n\r\n"


def get(target: bytes, version: bytes = b"HTTP/1.1", method: bytes = b"GET", headers: bytes = HEADERS) -> bytes:
    return b"%s %s %s\r\n%s" % (method, target, version, headers)


def send(proxy, reads: list[bytes], forget: bool) -> tuple[bytes, int]:
    """Send each read on one connection, waiting for the proxy between reads; what came back
    (latency values masked) and how many reads were taken as repeats."""
    async def kept() -> list:
        return [conn.reader.repeats.kept for conn in proxy.server.connections]

    async def forget_all() -> None:
        for conn in proxy.server.connections:
            conn.reader.repeats.kept = None

    async def replayed(before: list) -> int:
        # A repeat leaves its kept head in place and the request's protocol headers are its own.
        readers = [conn.reader for conn in proxy.server.connections]
        return sum(1 for reader in readers
                   if reader.repeats.kept is not None and reader.repeats.kept in before
                   and reader.protocol_headers is reader.repeats.kept.protocol_headers)

    taken = 0
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=1) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        time.sleep(0.05)
        for piece in reads:
            if forget:
                proxy.call(forget_all())
            before = proxy.call(kept())
            try:
                sock.sendall(piece)
            except OSError:
                break
            time.sleep(0.05)
            taken += proxy.call(replayed(before))
        received, _ = read_until_close(sock)
    return re.sub(rb"(Latency: )\d+", rb"\1-", received), taken


def same_as_parsed(proxy, raw_upstreams, reads: list[bytes], plugins: list | None = None) -> tuple[bytes, bytes, int]:
    """Assert both proxies' answers and upstream bytes are the same; return them and the repeats."""
    results = []
    for forget in (False, True):
        upstream = RecordingUpstream(raw_upstreams)
        svc = service(upstream.port)
        proxy.apply(snapshot([svc], [route(svc, ["/a", "/b"])], plugins=plugins))
        answer, taken = send(proxy, reads, forget)
        results.append((answer, upstream.received.replace(b"%d" % upstream.port, b"<port>"), taken))
    (answer, received, taken), (parsed_answer, parsed_received, none) = results
    assert none == 0
    assert answer == parsed_answer
    assert received == parsed_received
    return answer, received, taken


def test_a_repeated_head_is_replayed_for_each_requests_own_target(proxy, raw_upstreams):
    targets = [b"/a", b"/a/x?q=1", b"/b/%41?k=v&k=w", b"/a?", b"/a/~!$&'()*+,;=:@", b"/a//..//x"]
    answer, received, taken = same_as_parsed(proxy, raw_upstreams, [get(target) for target in targets])
    assert taken == len(targets) - 2  # the first is noted, the second kept
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == len(targets)
    lines = [line for line in received.split(b"\r\n") if line.endswith(b" HTTP/1.1")]
    assert lines == [b"GET /x?q=1 HTTP/1.1".replace(b"/x?q=1", path) for path in
                     [b"/", b"/x?q=1", b"/%41?k=v&k=w", b"/?", b"/~!$&'()*+,;=:@", b"//..//x"]]


@pytest.mark.parametrize("reads", [
    # Targets outside the plain characters, or not a path: llhttp reads them.
    [get(b"/a"), get(b"/a#frag"), get(b"/a"), get(b"/a\"x"), get(b"/a"), get(b"*"), get(b"/a"),
     get(b"http://api.test/a"), get(b"/a"), get(b"/a b"), get(b"/a")],
    [get(b"/a"), get(b"a/b"), get(b"/a")],
    [get(b"/a"), get(b"?a"), get(b"/a")],
    # No route, and a target over the limit.
    [get(b"/a"), get(b"/c"), get(b"/a"), get(b"/a" + b"x" * 9000), get(b"/a")],
    # Another method, another version, a head in two reads, two heads in one read.
    [get(b"/a"), get(b"/a", method=b"HEAD"), get(b"/a"), get(b"/a", method=b"PUT"), get(b"/a"),
     get(b"/a", version=b"HTTP/1.0"), get(b"/a"), get(b"/a")[:7], get(b"/a")[7:], get(b"/a") + get(b"/b"), get(b"/a")],
    # A read that looks like a whole request after a head begun, and inside a body.
    [get(b"/a"), b"GET /a", get(b"/a")],
    [get(b"/a"), get(b"/a", method=b"POST", headers=b"Host: api.test\r\nContent-Length: %d\r\n\r\n" % len(get(b"/a"))),
     get(b"/a"), get(b"/a")],
    # A body, Connection: close, Expect, Upgrade: never kept, never replayed.
    [get(b"/a", method=b"POST", headers=b"Host: api.test\r\nContent-Length: 2\r\n\r\nok"),
     get(b"/a", method=b"POST", headers=b"Host: api.test\r\nContent-Length: 2\r\n\r\nok"), get(b"/a")],
    [get(b"/a", headers=b"Host: api.test\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n"),
     get(b"/a", headers=b"Host: api.test\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n")],
    [get(b"/a", headers=b"Host: api.test\r\nConnection: close\r\n\r\n"),
     get(b"/a", headers=b"Host: api.test\r\nConnection: close\r\n\r\n")],
    # The same header block in other spellings, then a broken one.
    [get(b"/a"), get(b"/a", headers=HEADERS.replace(b"k1", b"k2")), get(b"/a"),
     get(b"/a", headers=HEADERS.replace(b"X-Key: k1\r\n", b"X-Key: k1\r\nHost: other.test\r\n"))],
    [get(b"/a"), get(b"/a", headers=HEADERS.replace(b"X-Key", b"X Key"))],
], ids=["targets", "relative", "query-only", "limits",
        "framing", "in-head", "in-body", "bodies", "upgrade", "close", "headers", "broken"])
def test_every_request_is_answered_as_llhttp_parses_it(proxy, raw_upstreams, reads):
    same_as_parsed(proxy, raw_upstreams, reads)


def test_a_head_over_the_limit_with_its_target_is_refused_as_when_parsed(make_proxy, raw_upstreams):
    for limits, long, status in (({"client_max_header_size": "1k"}, b"x" * 980, b"431"),
                                 ({"client_max_url_length": "500"}, b"x" * 600, b"414")):
        proxy = make_proxy(**limits)
        reads = [get(b"/a"), get(b"/a"), get(b"/a" + long[:400]), get(b"/a" + long), get(b"/a")]
        answer, _, taken = same_as_parsed(proxy, raw_upstreams, reads)
        assert taken == 1 and answer.count(b"HTTP/1.1 200 OK") == 3 and b"HTTP/1.1 " + status in answer


def test_headers_a_plugin_adds_to_one_request_are_not_in_the_next(proxy, raw_upstreams, monkeypatch):
    class Adder(Handler):
        PRIORITY = 5

        def access(self, call):
            call.headers.append((b"x-added", b"1"))

    monkeypatch.setitem(chain_module._CLASSES, "billable", Adder)
    reads = [get(b"/a")] * 4
    _, received, taken = same_as_parsed(proxy, raw_upstreams, reads, plugins=[plugin("billable")])
    assert taken == 2
    assert received.count(b"x-added: 1\r\n") == 4
