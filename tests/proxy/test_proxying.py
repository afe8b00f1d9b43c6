"""End to end through real sockets: routing, headers, framing, keep-alive, pipelining."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from tests.proxy.conftest import (
    ProxyHarness,
    plugin,
    raw_exchange,
    read_head,
    request,
    route,
    send_in_reads,
    service,
    snapshot,
)
from tollway.plugins.base import Handler
from tollway.proxy import chain as chain_module


def setup_echo(proxy: ProxyHarness, echo_port: int, path: str | None = None, **route_extra) -> tuple[dict, dict]:
    svc = service(echo_port, path=path, name="echo")
    rte = route(svc, ["/mock"], name="mock", **route_extra)
    proxy.apply(snapshot([svc], [rte]))
    return svc, rte


def test_request_is_proxied_with_service_path_joined(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream, path="/api")
    resp = request(proxy.port, "GET", "/mock/requests?a=1&b=2")
    assert resp.status == 200
    echo = resp.json()
    assert echo["path"] == "/api/requests"
    assert echo["query"] == "a=1&b=2"
    assert echo["headers"]["host"] == f"127.0.0.1:{echo_upstream}"


def test_no_route_answers_404_in_kongs_shape(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    resp = request(proxy.port, "GET", "/elsewhere")
    assert resp.status == 404
    assert resp.json() == {"message": "no Route matched with those values"}
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    assert resp.headers["server"].startswith("tollway/")


def test_preserve_host_and_strip_path_false(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream, path="/api", preserve_host=True, strip_path=False)
    echo = request(proxy.port, "GET", "/mock/x", headers={"Host": "client.example:8000"}).json()
    assert echo["headers"]["host"] == "client.example:8000"
    assert echo["path"] == "/api/mock/x"


def test_forwarded_headers_are_added_and_x_forwarded_for_appended(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    echo = request(proxy.port, "GET", "/mock/p", headers={
        "Host": "gw.example:8000", "X-Forwarded-For": "10.0.0.1", "X-Real-IP": "6.6.6.6",
        "X-Forwarded-Proto": "gopher"}).json()
    headers = echo["headers"]
    assert headers["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "gw.example"
    assert headers["x-forwarded-port"] == str(proxy.port)
    assert headers["x-forwarded-path"] == "/mock/p"
    assert headers["x-forwarded-prefix"] == "/mock"  # what strip_path took off, as Kong
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["via"] == "1.1 tollway"


@pytest.mark.parametrize(("paths", "strip_path"), [(["/mock"], False), (["/"], True)])
def test_no_x_forwarded_prefix_when_nothing_was_stripped(proxy, echo_upstream, paths, strip_path):
    svc = service(echo_upstream)
    proxy.apply(snapshot([svc], [route(svc, paths, strip_path=strip_path)]))
    headers = request(proxy.port, "GET", "/mock/p", headers={"X-Forwarded-Prefix": "/forged"}).json()["headers"]
    assert "x-forwarded-prefix" not in headers


def test_a_regex_path_forwards_the_part_it_matched_as_prefix(proxy, echo_upstream):
    svc = service(echo_upstream)
    proxy.apply(snapshot([svc], [route(svc, [r"~/v\d+/users"])]))
    echo = request(proxy.port, "GET", "/v2/users/7").json()
    assert echo["path"] == "/7"
    assert echo["headers"]["x-forwarded-prefix"] == "/v2/users"


def test_hop_by_hop_request_headers_are_removed(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    echo = request(proxy.port, "GET", "/mock", headers={
        "Connection": "keep-alive, X-Private", "X-Private": "secret", "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic x", "TE": "trailers", "X-Kept": "yes"}).json()
    headers = echo["headers"]
    for name in ("x-private", "keep-alive", "proxy-authorization", "te"):
        assert name not in headers
    assert headers["x-kept"] == "yes"


def test_responses_carry_via_and_latency_headers(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    resp = request(proxy.port, "GET", "/mock/delay/60")
    assert resp.headers["via"] == "1.1 tollway"
    assert int(resp.headers["x-tollway-upstream-latency"]) >= 50
    assert int(resp.headers["x-tollway-proxy-latency"]) >= 0


def test_head_gets_headers_without_a_body(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    raw = raw_exchange(proxy.port, b"HEAD /mock/bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                                   b"GET /mock/bytes/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, second = raw.split(b"HTTP/1.1 200", 2)[1:]
    assert b"Content-Length: 1000" in first and first.endswith(b"\r\n\r\n")
    assert second.endswith(b"\r\n\r\nxxx")


def test_pipelined_requests_are_answered_in_order(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    requests = b"".join(b"GET /mock/delay/%d?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (30 - i * 10, i) for i in range(3))
    requests += b"GET /mock/last?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = raw_exchange(proxy.port, requests)
    assert raw.count(b"HTTP/1.1 200 OK") == 4
    positions = [raw.index(b'"query": "n=%d"' % i) for i in range(4)]
    assert positions == sorted(positions)
    assert raw.rstrip().endswith(b"}")


def test_keep_alive_reuses_the_client_and_upstream_connections(proxy, raw_upstreams):
    async def answer(reader, writer):
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        for _ in range(5):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"ok"):
                data += sock.recv(4096)
    assert upstream.connections == 1
    assert proxy.stats["connections_accepted"] == 1


@pytest.mark.parametrize("extra, later", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen", b""),  # a whole response no request asked for
    (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsto", b""),     # the start of one...
    (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsto", b"len"),  # ...and its rest, while idle
])
def test_a_connection_that_answers_more_than_it_was_asked_is_not_used_again(proxy, raw_upstreams, extra, later):
    # nginx closes an upstream connection that sent more than the response; reused, its extra
    # bytes would be taken for (the start of) the answer to the next request.
    async def answer(reader, writer):
        number = 0
        while True:
            try:
                await read_head(reader)
            except asyncio.IncompleteReadError:
                return
            number += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nreply%d" % number
                         + (extra if number == 1 else b""))
            if number == 1 and later:
                await asyncio.sleep(0.05)
                writer.write(later)
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    assert request(proxy.port, "GET", "/").body == b"reply1"
    time.sleep(0.2)
    assert request(proxy.port, "GET", "/").body == b"reply1"  # a new connection's first answer
    assert upstream.connections == 2


def test_connection_close_and_http_10(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    raw = raw_exchange(proxy.port, b"GET /mock/bytes/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Connection: close" in raw and raw.endswith(b"xxxxx")
    raw = raw_exchange(proxy.port, b"GET /mock/bytes/5 HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200") and b"Connection: close" in raw and raw.endswith(b"xxxxx")
    raw = raw_exchange(proxy.port, b"GET /mock/bytes/5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                       until=b"xxxxx", timeout=1)
    assert b"Connection: keep-alive" in raw and b"Content-Length: 5" in raw


def test_expect_100_continue_gets_an_interim_response(proxy, echo_upstream):
    setup_echo(proxy, echo_upstream)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /mock/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        data = b""
        while not data.endswith(b"}"):
            data += sock.recv(4096)
    assert b"HTTP/1.1 200 OK" in data and b'"body_length": 5' in data
    assert b"expect" not in data.split(b"\r\n\r\n", 1)[1]


def test_chunked_request_body_is_streamed_to_the_upstream_chunked(proxy, raw_upstreams):
    seen = {}

    async def answer(reader, writer):
        line, headers = await read_head(reader)
        seen["headers"] = headers
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        seen["body"] = body
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    raw = raw_exchange(proxy.port, b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", until=b"\r\n\r\n", timeout=2)
    assert raw.startswith(b"HTTP/1.1 201")
    assert seen["body"] == b"hello world"
    assert seen["headers"]["transfer-encoding"] == "chunked"


def test_chunked_and_close_delimited_responses_are_reframed(proxy, raw_upstreams):
    async def chunked(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"2\r\nde\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)

    async def until_close(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nstreamed until close")
        await writer.drain()
    a, b = raw_upstreams(chunked), raw_upstreams(until_close)
    sa, sb = service(a.port), service(b.port)
    proxy.apply(snapshot([sa, sb], [route(sa, ["/a"]), route(sb, ["/b"])]))
    for path, body in (("/a", b"abcde"), ("/b", b"streamed until close")):
        raw = raw_exchange(proxy.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode(),
                           until=b"0\r\n\r\n", timeout=2)
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert payload.endswith(b"0\r\n\r\n")
        decoded, rest = b"", payload
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        assert decoded == body
        assert request(proxy.port, "GET", path).body == body  # http.client decodes it too


async def _switch_and_shout(reader, writer):
    """Agree to the WebSocket upgrade, then echo every byte upper-cased."""
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    while True:
        data = await reader.read(100)
        if not data:
            break
        writer.write(data.upper())


def test_websocket_upgrade_is_tunnelled(proxy, raw_upstreams):
    async def ws(reader, writer):
        line, headers = await read_head(reader)
        assert headers["upgrade"] == "websocket"
        await _switch_and_shout(reader, writer)
    upstream = raw_upstreams(ws)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/ws"])]))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\nearly")
        data = b""
        while b"EARLY" not in data:
            data += sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 101")
        assert b"Upgrade: websocket" in data
        sock.sendall(b"ping")
        assert sock.recv(4096) == b"PING"


def test_configuration_swaps_without_dropping_connections(proxy, echo_upstream):
    svc = service(echo_upstream)
    proxy.apply(snapshot([svc], [route(svc, ["/one"])]))
    assert request(proxy.port, "GET", "/one").status == 200
    proxy.apply(snapshot([svc], [route(svc, ["/two"])], version=2))
    assert request(proxy.port, "GET", "/one").status == 404
    assert request(proxy.port, "GET", "/two").status == 200
    assert proxy.stats["config_version"] == 2


def test_non_websocket_upgrade_is_proxied_as_plain_http_and_what_follows_is_parsed(proxy, raw_upstreams):
    seen = []

    async def answer(reader, writer):
        while True:
            line, headers = await read_head(reader)
            seen.append((line, headers))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    raw = raw_exchange(proxy.port, b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                   b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
                                   b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK") == 2 and b"101" not in raw
    assert [line for line, _ in seen] == ["GET /first HTTP/1.1", "GET /second HTTP/1.1"]
    for _, headers in seen:
        assert "upgrade" not in headers and "http2-settings" not in headers


def test_websocket_request_pipelined_behind_another_waits_its_turn(proxy, raw_upstreams):
    async def answer(reader, writer):
        line, headers = await read_head(reader)
        if headers.get("upgrade") != "websocket":
            await asyncio.sleep(0.1)  # the WebSocket request and its early bytes arrive meanwhile
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            return
        await _switch_and_shout(reader, writer)
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\nearly")
        data = b""
        while b"EARLY" not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
        first, _, second = data.partition(b"first")
        assert first.startswith(b"HTTP/1.1 200 OK") and second.startswith(b"HTTP/1.1 101")
        sock.sendall(b"ping")
        assert sock.recv(4096) == b"PING"


def test_via_is_appended_to_the_clients_and_the_upstreams(proxy, raw_upstreams):
    seen = {}

    async def answer(reader, writer):
        _, seen["headers"] = await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nVia: 1.1 backend\r\nContent-Length: 2\r\n\r\nok")
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    resp = request(proxy.port, "GET", "/", headers={"Via": "1.0 fred, 1.1 p.example"})
    assert seen["headers"]["via"] == "1.0 fred, 1.1 p.example, 1.1 tollway"
    assert resp.headers["via"] == "1.1 backend, 1.1 tollway"


@pytest.mark.parametrize(("host", "forwarded"),
                         [("[::1]:8000", "[::1]"), ("[::1]", "[::1]"), ("gw.example", "gw.example")])
def test_x_forwarded_host_is_the_host_without_its_port(proxy, echo_upstream, host, forwarded):
    setup_echo(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock/p", headers={"Host": host}).json()["headers"]
    assert headers["x-forwarded-host"] == forwarded


def test_each_request_on_a_connection_is_answered_in_its_own_http_version(proxy, raw_upstreams):
    # The proxy reads "HTTP/1.1" off the first line of a read instead of asking llhttp; every other
    # case (a later request of the same read, a split request line, a leading empty line) asks it.
    async def chunked(reader, writer):
        while True:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
            await writer.drain()
    upstream = raw_upstreams(chunked)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    v11, v10 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
    cases = {
        "one read": [v11 + v10],
        "a read each": [v11, v10],
        "a leading empty line": [b"\r\n" + v11, v10],
        "the 1.0 request line split": [v11, v10[:10], v10[10:]],
    }
    for name, pieces in cases.items():
        raw, closed = send_in_reads(proxy.port, pieces)
        assert closed, name
        first, second = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
        assert b"Transfer-Encoding: chunked" in first and first.endswith(b"5\r\nabcde\r\n0\r\n\r\n"), name
        head, _, body = second.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head and b"Connection: close" in head and body == b"abcde", name


def test_header_names_are_read_afresh_when_a_position_changes_name(proxy, raw_upstreams):
    # Both sides remember each connection's header names by position: a later message with other
    # names (or other cases) at the same positions must be framed and filtered by its own.
    heads = []
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-One: 1\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\nX-One: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\nKeep-Alive: timeout=5\r\n\r\nok"]

    async def varied(reader, writer):
        for answer in answers:
            line, headers = await read_head(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            heads.append((headers, body))
            writer.write(answer)
            await writer.drain()
    upstream = raw_upstreams(varied)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    raw, closed = send_in_reads(proxy.port, [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        b"GET / HTTP/1.1\r\nHost: x\r\nCONNECTION: close\r\n\r\n"])
    assert closed
    first, second, third = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"Content-Length: 2" in first and b"X-One: 1" in first and first.endswith(b"\r\n\r\nok")
    assert b"Transfer-Encoding: chunked" in second and second.endswith(b"2\r\nok\r\n0\r\n\r\n")
    assert b"Keep-Alive" not in third and b"Content-Length: 2" in third and b"Connection: close" in third
    assert heads[0][0]["x-a"] == "1" and heads[1] == (heads[1][0], b"hi") and "x-a" not in heads[1][0]
    assert heads[1][0]["content-length"] == "2" and "connection" not in heads[2][0]


def test_pipelined_requests_for_other_hosts_are_routed_and_forwarded_by_their_own_host(proxy, echo_upstream):
    # The proxy keeps the last valid Host of a connection with its routing name; a request whose
    # Host is another (here parsed before the one ahead of it started) must use its own.
    svc_a, svc_b = service(echo_upstream, path="/a"), service(echo_upstream, path="/b")
    proxy.apply(snapshot([svc_a, svc_b], [route(svc_a, ["/"], hosts=["a.test"]),
                                          route(svc_b, ["/"], hosts=["b.test"])]))
    heads = b"".join(b"GET /x HTTP/1.1\r\nHost: %s\r\n\r\n" % host
                     for host in (b"a.test:8000", b"b.test", b"a.test:8000", b"A.TEST"))
    raw = raw_exchange(proxy.port, heads + b"GET /x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
    echoes = [json.loads(part.partition(b"\r\n\r\n")[2]) for part in raw.split(b"HTTP/1.1 200 OK\r\n")[1:]]
    assert [(e["path"], e["headers"]["x-forwarded-host"]) for e in echoes] == [
        ("/a/x", "a.test"), ("/b/x", "b.test"), ("/a/x", "a.test"), ("/a/x", "A.TEST"), ("/b/x", "b.test")]


def test_headers_that_change_between_requests_of_a_connection_are_forwarded_as_sent(proxy, raw_upstreams):
    # A connection's header lines for the upstream are reused while its requests send the same
    # headers: any change (a value, a header more or less, a Connection header naming one) must
    # reach the upstream.
    requests = [
        (b"X-A: 1\r\nX-B: 2\r\n", {"x-a": "1", "x-b": "2"}),
        (b"X-A: 1\r\nX-B: 2\r\n", {"x-a": "1", "x-b": "2"}),
        (b"X-A: 1\r\nX-B: 3\r\n", {"x-a": "1", "x-b": "3"}),
        (b"X-A: 1\r\n", {"x-a": "1"}),
        (b"X-A: 1\r\nX-B: 3\r\nX-C: 4\r\n", {"x-a": "1", "x-b": "3", "x-c": "4"}),
        (b"X-A: 1\r\nX-B: 3\r\nX-C: 4\r\nConnection: X-C\r\n", {"x-a": "1", "x-b": "3"}),
        (b"X-A: 1\r\nX-B: 3\r\nX-C: 4\r\n", {"x-a": "1", "x-b": "3", "x-c": "4"}),
        (b"X-A: 1\r\nX-B: 3\r\nX-C: 4\r\nX-Forwarded-For: 10.1.1.1\r\n", {"x-a": "1", "x-b": "3", "x-c": "4"}),
        (b"x-a: 1\r\nX-B: 2\r\nConnection: close\r\n", {"x-a": "1", "x-b": "2"}),
    ]
    heads = []

    async def record(reader, writer):
        for _ in requests:
            heads.append(await read_head(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    upstream = raw_upstreams(record)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    raw, _ = send_in_reads(proxy.port, [b"GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (number, lines)
                                        for number, (lines, _) in enumerate(requests)])
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == len(requests)
    for number, ((line, headers), (_, expected)) in enumerate(zip(heads, requests, strict=True)):
        assert line == f"GET /{number} HTTP/1.1"
        assert {name: value for name, value in headers.items() if name.startswith("x-") and
                not name.startswith("x-forwarded") and name != "x-real-ip"} == expected, number
        assert headers["x-forwarded-for"] == ("10.1.1.1, 127.0.0.1" if number == 7 else "127.0.0.1"), number


def test_response_headers_that_change_between_responses_reach_the_client_as_sent(proxy, raw_upstreams):
    # A client connection's response header lines are reused while the upstream sends the same
    # headers: any change (a value, a header more or less) must reach the client.
    answers = [
        b"X-A: 1\r\nX-B: 2\r\n",
        b"X-A: 1\r\nX-B: 2\r\n",
        b"X-A: 1\r\nX-B: 3\r\n",
        b"X-A: 1\r\n",
        b"X-A: 1\r\nX-B: 3\r\nX-C: 4\r\n",
        b"",
        b"X-A: 1\r\nX-B: 2\r\n",
    ]

    async def answer(reader, writer):
        for lines in answers:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\n%sContent-Length: 2\r\n\r\nok" % lines)
            await writer.drain()
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    last = len(answers) - 1
    raw, _ = send_in_reads(proxy.port, [b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n" % (b"Connection: close\r\n" if n == last
                                                                                  else b"")
                                        for n in range(len(answers))])
    responses = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == len(answers)
    for number, (response, lines) in enumerate(zip(responses, answers, strict=True)):
        head = response.partition(b"\r\n\r\n")[0]
        assert [line for line in head.split(b"\r\n") if line.startswith(b"X-") and not line.startswith(b"X-Tollway")] \
            == lines.split(b"\r\n")[:-1], number


def test_headers_a_plugin_changes_in_place_after_a_request_do_not_stick_to_the_next(proxy, raw_upstreams,
                                                                                    monkeypatch):
    # Both sides keep the last headers they joined, to reuse them; a plugin that later changes a
    # call's header lists in place must not make a following message look already joined.
    class Mutator(Handler):
        PRIORITY = 5

        def log(self, call):
            call.headers.append((b"x-b", b"2"))
            call.response_headers.append((b"X-D", b"4"))

    monkeypatch.setitem(chain_module._CLASSES, "billable", Mutator)
    heads = []

    async def answer(reader, writer):
        for lines in (b"X-C: 3\r\n", b"X-C: 3\r\nX-D: 4\r\n"):
            heads.append((await read_head(reader))[1])
            writer.write(b"HTTP/1.1 200 OK\r\n%sContent-Length: 2\r\n\r\nok" % lines)
            await writer.drain()
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])], plugins=[plugin("billable")]))
    # The second request's headers equal the first's as the plugin left them (no Connection: close,
    # which would tell them apart): read until the proxy falls silent.
    raw, _ = send_in_reads(proxy.port, [b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n",
                                        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\n\r\n"], timeout=1)
    first, second = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert "x-b" not in heads[0] and heads[1]["x-b"] == "2"
    assert b"X-D" not in first and b"\r\nX-D: 4\r\n" in second


def test_each_response_on_a_connection_is_framed_and_timed_on_its_own(proxy, raw_upstreams):
    # A connection keeps its last Content-Length and latency lines while they repeat.
    bodies = [b"ab", b"abc", b"xyz", b"", b"ab", b"ab"]
    delays = [0, 0, 0.06, 0, 0, 0.06]

    async def answer(reader, writer):
        for body, delay in zip(bodies, delays, strict=True):
            await read_head(reader)
            await asyncio.sleep(delay)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    upstream = raw_upstreams(answer)
    svc = service(upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        for body, delay in zip(bodies, delays, strict=True):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # each once the last is answered
            received = b""
            while b"\r\n\r\n" not in received or not received.endswith(body):
                received += sock.recv(65536)
            head, _, rest = received.partition(b"\r\n\r\n")
            lines = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
            assert lines[b"Content-Length"] == b"%d" % len(body) and rest == body
            assert (int(lines[b"X-Tollway-Upstream-Latency"]) >= 50) == (delay > 0), (body, delay)
