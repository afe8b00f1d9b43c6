"""tollway/mockbin.py: the quickstart's mock service and the tests' upstream, over real sockets."""

from __future__ import annotations

import json
import socket
import time


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a new connection; everything received until the mock closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def responses(raw: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Status line, headers and body of each response in `raw` (all have a Content-Length)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
        length = int(headers.get("content-length", "0"))
        found.append((status, headers, raw[:length]))
        raw = raw[length:]
    return found


def test_every_request_is_echoed_as_json(echo_upstream: int) -> None:
    raw = exchange(echo_upstream, b"POST /any/path?a=1&b=2 HTTP/1.1\r\nHost: up\r\nX-Thing: One\r\n"
                                  b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    [(status, headers, body)] = responses(raw)
    assert status == "HTTP/1.1 200 OK" and headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {"method": "POST", "path": "/any/path", "query": "a=1&b=2",
                                "headers": {"host": "up", "x-thing": "One", "content-length": "5",
                                            "connection": "close"},
                                "body_length": 5}


def test_status_bytes_and_head_answer_as_asked_on_one_kept_alive_connection(echo_upstream: int) -> None:
    raw = exchange(echo_upstream, b"GET /status/418 HTTP/1.1\r\nHost: up\r\n\r\n"
                                  b"GET /bytes/7 HTTP/1.1\r\nHost: up\r\n\r\n"
                                  b"HEAD /bytes/1000 HTTP/1.1\r\nHost: up\r\n\r\n"
                                  b"OPTIONS /x HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n")
    teapot, seven, head, options = responses(raw.replace(b"Content-Length: 1000", b"Content-Length: 0"))
    assert teapot[0] == "HTTP/1.1 418 I'm a Teapot" and json.loads(teapot[2])["path"] == "/status/418"
    assert seven[2] == b"xxxxxxx" and seven[1]["content-type"] == "application/octet-stream"
    assert head[0] == "HTTP/1.1 200 OK" and head[2] == b""  # the head alone, of a 1000-byte answer
    assert b"Content-Length: 1000\r\n" in raw
    assert json.loads(options[2])["method"] == "OPTIONS"


def test_delay_answers_after_the_time_asked(echo_upstream: int) -> None:
    started = time.monotonic()
    raw = exchange(echo_upstream, b"GET /delay/200 HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n")
    assert time.monotonic() - started >= 0.2
    assert json.loads(responses(raw)[0][2])["path"] == "/delay/200"


def test_http_10_closes_unless_asked_to_keep_alive(echo_upstream: int) -> None:
    assert responses(exchange(echo_upstream, b"GET /bytes/1 HTTP/1.0\r\n\r\n"))[0][1]["connection"] == "close"
    with socket.create_connection(("127.0.0.1", echo_upstream), timeout=5) as sock:
        for _ in range(2):  # the connection stays open for a second request
            sock.sendall(b"GET /bytes/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            received = b""
            while not received.endswith(b"\r\n\r\nxx"):
                received += sock.recv(4096)
            assert b"Connection: close" not in received


def test_chunked_bodies_and_expect_100_continue_are_read_whole(echo_upstream: int) -> None:
    with socket.create_connection(("127.0.0.1", echo_upstream), timeout=5) as sock:
        sock.sendall(b"PUT /up HTTP/1.1\r\nHost: up\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc" + b"PUT /up HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n"
                              b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert [json.loads(body)["body_length"] for _, _, body in responses(raw)] == [3, 11]
