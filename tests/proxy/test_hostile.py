"""Hostile requests: smuggling attempts and over-limit requests are refused before any upstream sees them.

Every refused request gets Kong's error shape and a closed connection; the recording upstream proves
that nothing was forwarded. A request refused before routing is not metered.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.proxy.conftest import exchange, plugin, request, route, send_in_reads, service, snapshot
from tollway.proxy.request_head import MAX_PIPELINE

OK_GET = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"


def one_route(proxy, upstream_port, **route_extra):
    svc = service(upstream_port, retries=0)
    proxy.apply(snapshot([svc], [route(svc, ["/"], name="r", **route_extra)], plugins=[plugin("billable")]))


def refusal(raw: bytes) -> tuple[int, dict]:
    """The status and JSON body of a raw response; asserts the proxy said it closes."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert b"Content-Type: application/json; charset=utf-8" in head
    return int(head.split(b" ", 2)[1]), json.loads(body)


SMUGGLING = {
    "content-length and transfer-encoding": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding and content-length": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                            b"Content-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    "two content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "equal content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "content-length list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
    "signed content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
    "chunk without CRLF": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded: yes\r\n\r\n",
    "bare LF in the head": b"GET / HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n",
    "bare LF after the request line": b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    "bare CR": b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
    "gzip as final coding": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "gzip before chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "chunked twice": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                     b"\r\n\r\n0\r\n\r\n",
    "transfer-encoding in HTTP/1.0": b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",
    "two hosts": b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "no host in HTTP/1.1": b"GET / HTTP/1.1\r\nX-A: a\r\n\r\n",
    "NUL in a header": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "non-ASCII header value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n",
    "non-ASCII header name": b"GET / HTTP/1.1\r\nHost: x\r\nX-\xe9: a\r\n\r\n",
    "non-ASCII path": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in the path": b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/0.9": b"GET /\r\n\r\n",
    "non-WebSocket upgrade with a body": b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                                         b"Content-Length: 31\r\n\r\nGET /smuggled HTTP/1.1\r\nA: b\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    "a path in the host": b"GET / HTTP/1.1\r\nHost: evil.test/x\r\n\r\n",
    "a backslash in the host": b"GET / HTTP/1.1\r\nHost: evil.test\\x\r\n\r\n",
    "user info in the host": b"GET / HTTP/1.1\r\nHost: user@evil.test\r\n\r\n",
    "a query in the host": b"GET / HTTP/1.1\r\nHost: x?y\r\n\r\n",
    "a space in the host": b"GET / HTTP/1.1\r\nHost: x y\r\n\r\n",
    "dot-dot in the host": b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n",
}

# Hosts a client may send: names, IPv4 and IPv6 literals, with or without a port.
VALID_HOSTS = [b"x", b"api.example.com", b"API.Example.com:8000", b"127.0.0.1:80", b"[::1]:8000", b"my_host",
               b"xn--bcher-kva.example", b"example.com."]


@pytest.mark.parametrize("data", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_ambiguous_or_malformed_request_answers_400_closes_and_forwards_nothing(
        proxy, recording_upstream, recorder, data):
    one_route(proxy, recording_upstream.port)
    raw, closed = exchange(proxy.port, data)
    assert closed
    assert refusal(raw) == (400, {"message": "Bad request"})
    assert recording_upstream.received == b""
    assert recorder.metered == []  # refused before routing: not metered
    assert proxy.stats["requests_rejected"] == 1


@pytest.mark.parametrize("host", VALID_HOSTS, ids=[h.decode() for h in VALID_HOSTS])
def test_every_valid_host_form_is_proxied(proxy, recording_upstream, host):
    one_route(proxy, recording_upstream.port)
    raw, _ = exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


def test_connect_answers_405_and_http_2_answers_505(proxy, recording_upstream):
    one_route(proxy, recording_upstream.port)
    raw, closed = exchange(proxy.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert closed and refusal(raw) == (405, {"message": "Method not allowed"})
    raw, closed = exchange(proxy.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert closed and refusal(raw) == (505, {"message": "HTTP version not supported"})
    assert recording_upstream.received == b""


def test_requests_before_a_malformed_one_are_answered_first(proxy, recording_upstream, recorder):
    one_route(proxy, recording_upstream.port)
    raw, closed = exchange(proxy.port, OK_GET + OK_GET + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                                                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert closed
    first, second, third = raw.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and first.endswith(b"ok")
    assert second.startswith(b"200") and second.endswith(b"ok")
    assert third.startswith(b"400") and third.endswith(b'{"message":"Bad request"}')
    assert recording_upstream.requests == 2
    assert [m["status"] for m in recorder.metered] == [200, 200]


def test_a_body_that_breaks_in_the_read_that_completed_its_head_reaches_no_upstream(
        proxy, recording_upstream, recorder):
    one_route(proxy, recording_upstream.port)
    assert request(proxy.port, "GET", "/warm").status == 200  # an idle pooled upstream connection now
    received = recording_upstream.received
    raw, closed = exchange(proxy.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       b"5\r\nhello\r\nxyz\r\n")
    assert closed and refusal(raw)[0] == 400
    assert recording_upstream.received == received
    assert [m["status"] for m in recorder.metered] == [200]


def test_a_chunked_body_that_breaks_mid_stream_is_abandoned_and_metered(proxy, recording_upstream, recorder):
    one_route(proxy, recording_upstream.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        deadline = time.monotonic() + 3
        while b"hello" not in recording_upstream.received and time.monotonic() < deadline:
            time.sleep(0.01)
        sock.sendall(b"not-a-size\r\n")
        raw = sock.recv(65536)
    assert refusal(raw) == (400, {"message": "Bad request"})
    assert not recording_upstream.received.endswith(b"0\r\n\r\n")  # the upstream never saw a whole request
    time.sleep(0.05)
    assert [m["status"] for m in recorder.metered] == [400]


# Limits ------------------------------------------------------------------------------------------

def test_head_over_client_max_header_size_answers_431(make_proxy, recording_upstream):
    proxy = make_proxy(client_max_header_size="1k")
    one_route(proxy, recording_upstream.port)
    ok = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 900 + b"\r\nConnection: close\r\n\r\n"
    assert exchange(proxy.port, ok)[0].startswith(b"HTTP/1.1 200")
    raw, closed = exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n")
    assert closed and refusal(raw) == (431, {"message": "Request header or cookie too large"})
    many_small = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 40) for i in range(30))
    raw, closed = exchange(proxy.port, many_small + b"\r\n")
    assert closed and refusal(raw)[0] == 431
    assert recording_upstream.requests == 1


def test_a_head_that_never_ends_is_refused_once_over_the_limit(make_proxy, recording_upstream):
    proxy = make_proxy(client_max_header_size="4k")
    one_route(proxy, recording_upstream.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        raw = b""
        for _ in range(64):  # one header line, never finished, 1 KB at a time
            try:
                sock.sendall(b"a" * 1024)
            except OSError:
                break
            time.sleep(0.005)
        while not raw.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert refusal(raw)[0] == 431
    assert recording_upstream.received == b""


def test_too_many_headers_answer_431(make_proxy, recording_upstream):
    proxy = make_proxy(client_max_headers="10")
    one_route(proxy, recording_upstream.port)
    raw, closed = exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 10 + b"\r\n")
    assert closed and refusal(raw)[0] == 431
    assert recording_upstream.received == b""


def test_long_url_answers_414(make_proxy, recording_upstream):
    proxy = make_proxy(client_max_url_length="100")
    one_route(proxy, recording_upstream.port)
    assert request(proxy.port, "GET", "/" + "a" * 99).status == 200
    raw, closed = exchange(proxy.port, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed and refusal(raw) == (414, {"message": "URI too long"})
    assert recording_upstream.requests == 1


def test_content_length_over_client_max_body_size_answers_413_before_the_body(
        make_proxy, recording_upstream, recorder):
    proxy = make_proxy(client_max_body_size="1k")
    one_route(proxy, recording_upstream.port)
    assert request(proxy.port, "POST", "/", body=b"x" * 1024).status == 200
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n")  # no body sent
        raw = sock.recv(65536)
    assert refusal(raw) == (413, {"message": "Request size limit exceeded"})
    assert recording_upstream.requests == 1
    time.sleep(0.05)
    assert [m["status"] for m in recorder.metered] == [200]  # the 413 came before routing


def test_chunked_body_over_client_max_body_size_answers_413_mid_stream(make_proxy, recording_upstream, recorder):
    proxy = make_proxy(client_max_body_size="1k")
    one_route(proxy, recording_upstream.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        raw = b""
        try:
            for _ in range(8):
                sock.sendall(b"200\r\n" + b"b" * 512 + b"\r\n")
                time.sleep(0.02)
        except OSError:
            pass
        while not raw.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert refusal(raw) == (413, {"message": "Request size limit exceeded"})
    assert b"0\r\n\r\n" not in recording_upstream.received  # no complete request went out
    assert recording_upstream.received.count(b"b") <= 1024
    time.sleep(0.05)
    assert [m["status"] for m in recorder.metered] == [413]  # routed, so metered with what was sent


def test_slowloris_head_gets_408_and_its_slot_is_freed(make_proxy, recording_upstream):
    proxy = make_proxy(client_header_timeout="0.4")
    one_route(proxy, recording_upstream.port)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        raw = b""
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.05)
            try:
                raw += sock.recv(4096)
                break
            except TimeoutError:
                continue
        sock.settimeout(5)
        while not raw.endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
    elapsed = time.monotonic() - started
    assert refusal(raw) == (408, {"message": "Request timeout"})
    assert 0.4 <= elapsed < 1.5
    assert proxy.stats["timeouts"] == 1
    deadline = time.monotonic() + 3
    while proxy.stats["connections_active"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.stats["connections_active"] == 0
    assert recording_upstream.received == b""


def test_silent_connection_is_closed_after_the_header_timeout(make_proxy):
    proxy = make_proxy(client_header_timeout="0.3")
    started = time.monotonic()
    raw, closed = exchange(proxy.port, b"", timeout=3)
    assert closed and raw == b""
    assert time.monotonic() - started < 1.2


def test_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(make_proxy, recording_upstream):
    proxy = make_proxy(client_keepalive_timeout="0.4", client_header_timeout="5")
    one_route(proxy, recording_upstream.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        for _ in range(3):  # busy connections are not closed, however long they live
            sock.sendall(OK_GET)
            data = b""
            while not data.endswith(b"ok"):
                data += sock.recv(4096)
            time.sleep(0.2)
        started = time.monotonic()
        assert sock.recv(4096) == b""
        assert 0.15 <= time.monotonic() - started < 1.5
    assert proxy.stats["timeouts"] == 1


def test_connections_over_worker_connections_are_closed_at_once_and_counted(make_proxy, recording_upstream):
    proxy = make_proxy(worker_connections="3")
    one_route(proxy, recording_upstream.port)
    held = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(3)]
    try:
        deadline = time.monotonic() + 3
        while proxy.stats["connections_active"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        raw, closed = exchange(proxy.port, OK_GET, timeout=2)
        assert closed and raw == b""
        assert proxy.stats["connections_refused"] == 1
        held[0].sendall(OK_GET)  # the connections inside the limit are served
        data = b""
        while not data.endswith(b"ok"):
            data += held[0].recv(4096)
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 3
    while proxy.stats["connections_active"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert request(proxy.port, "GET", "/again").status == 200


def test_a_body_that_stops_arriving_gets_408_after_the_header_timeout(make_proxy, recording_upstream, recorder):
    proxy = make_proxy(client_header_timeout="0.4")
    one_route(proxy, recording_upstream.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"d" * 10)
        started = time.monotonic()
        raw = b""
        while not raw.endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
    assert refusal(raw) == (408, {"message": "Request timeout"})
    assert 0.3 <= time.monotonic() - started < 1.5
    assert recording_upstream.answered == 0
    time.sleep(0.05)
    assert [m["status"] for m in recorder.metered] == [408]  # routed: metered with the status sent


def test_a_client_that_half_closes_mid_body_frees_its_connection_and_upstream(proxy, recording_upstream, recorder):
    one_route(proxy, recording_upstream.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"d" * 10)
        time.sleep(0.1)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4096) == b""
    deadline = time.monotonic() + 2
    while (proxy.stats["connections_active"] or not recorder.metered) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.stats["connections_active"] == 0
    assert [m["status"] for m in recorder.metered] == [499]


def test_a_flood_of_pipelined_requests_is_answered_up_to_the_pipeline_depth_then_refused(
        proxy, recording_upstream):
    one_route(proxy, recording_upstream.port)
    raw, closed = exchange(proxy.port, OK_GET * 200)  # one write: all parsed before the first is answered
    assert closed
    assert raw.count(b"HTTP/1.1 200 OK") == 1 + MAX_PIPELINE
    assert raw.endswith(b'{"message":"Bad request"}')
    assert recording_upstream.answered == 1 + MAX_PIPELINE


def test_a_bare_question_mark_reaches_the_upstream_and_the_https_redirect(proxy, recording_upstream):
    one_route(proxy, recording_upstream.port)
    raw, _ = exchange(proxy.port, b"GET /p? HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert recording_upstream.received.startswith(b"GET /p? HTTP/1.1\r\n")
    one_route(proxy, recording_upstream.port, protocols=["https"], https_redirect_status_code=308)
    raw, _ = exchange(proxy.port, b"GET /p? HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 308") and b"\r\nLocation: https://x/p?\r\n" in raw


# The proxy checks a read for non-ASCII bytes once instead of each header value: a value that
# straddles reads, or follows a large or non-ASCII read, must still be checked.
NON_ASCII_SPLITS = {
    "non-ASCII in the first read, the rest ASCII": [b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3", b"\xa9\r\n\r\n"],
    "ASCII first read, non-ASCII in the second": [b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf", b"\xc3\xa9\r\n\r\n"],
    "non-ASCII in a read of its own mid-head": [b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a", b"\xff", b"b\r\n\r\n"],
    "a head after a read over the scan size": [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n" + b"a" * 9000
        + b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n"],
}


@pytest.mark.parametrize("pieces", list(NON_ASCII_SPLITS.values()), ids=list(NON_ASCII_SPLITS))
def test_a_non_ascii_value_is_refused_however_the_reads_fall(proxy, recording_upstream, pieces):
    one_route(proxy, recording_upstream.port)
    raw, closed = send_in_reads(proxy.port, pieces)
    assert closed
    assert raw.endswith(b'{"message":"Bad request"}'), raw[-200:]
    assert recording_upstream.received.count(b"X-A") == 0 and recording_upstream.received.count(b"x-a") == 0


def test_a_non_ascii_body_does_not_taint_the_next_head(proxy, recording_upstream):
    one_route(proxy, recording_upstream.port)
    body = bytes(range(256))
    raw, closed = send_in_reads(proxy.port, [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        + b"GET / HTTP/1.1\r\nHost: x\r\nX-A: plain\r\nConnection: close\r\n\r\n"])
    assert closed
    assert raw.count(b"HTTP/1.1 200") == 2, raw
    assert recording_upstream.answered == 2


def test_a_bad_host_after_a_good_one_on_the_same_connection_is_refused(proxy, recording_upstream):
    one_route(proxy, recording_upstream.port)
    raw, closed = exchange(proxy.port, OK_GET + b"GET / HTTP/1.1\r\nHost: x/evil\r\n\r\n")
    assert closed
    first, second = raw.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and second.startswith(b"400")
    assert recording_upstream.answered == 1
