"""The plugin development kit on the proxy side (tollway.plugins.base.Call): the per-call context.

Test handlers stand in for the bundled plugins (their names are the ones settings enable); the
proxy, its upstreams and its clients are real, on real sockets.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.proxy.conftest import (
    ProxyHarness,
    RecordingUpstream,
    plugin,
    request,
    route,
    service,
    snapshot,
)
from tollway.plugins.base import Handler
from tollway.proxy import chain as chain_module
from tollway.proxy.call import Call

GET = b"GET /a/x?q=1 HTTP/1.1\r\nHost: api.test\r\nX-Remove-Me: 1\r\nX-Keep: k\r\n\r\n"


def use(monkeypatch: pytest.MonkeyPatch, **handlers: type[Handler]) -> None:
    """Serve the plugin names `key_auth` and `billable` with these test handlers."""
    for name, handler in handlers.items():
        monkeypatch.setitem(chain_module._CLASSES, name.replace("_", "-"), handler)


def one_route(proxy: ProxyHarness, port: int, plugins: list[dict[str, Any]], **extra: Any) -> None:
    svc = service(port, **extra)
    proxy.apply(snapshot([svc], [route(svc, ["/a"])], plugins=plugins))


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response with a Content-Length body: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head, body


def on_one_connection(proxy: ProxyHarness, reads: list[bytes]) -> tuple[list[tuple[bytes, bytes]], int]:
    """Send each read on one keep-alive connection once the answer to the one before arrived
    (so each is a read of its own); the responses, and how many heads the connection kept."""
    async def kept() -> int:
        return sum(conn.reader.repeats.kept is not None for conn in proxy.server.connections)

    responses = []
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in reads:
            sock.sendall(data)
            responses.append(read_response(sock))
        repeats = proxy.call(kept())
    return responses, repeats


def settle(proxy: ProxyHarness) -> None:
    """Return once what the proxy's loop had queued (the log phases of answered calls) has run."""
    proxy.call(asyncio.sleep(0))


def upstream_heads(upstream: RecordingUpstream) -> list[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """The request heads the upstream received: request line, and lower-cased header lines in order."""
    heads = []
    for head in upstream.received.split(b"\r\n\r\n")[:-1]:
        line, *lines = head.split(b"\r\n")
        headers = [item.partition(b":") for item in lines]
        heads.append((line, [(name.lower(), value.strip()) for name, _, value in headers]))
    return heads


# The per-call context ----------------------------------------------------------------------------

class Seen:
    """What the test handlers saw, by phase."""

    entries: list[tuple[str, Any]] = []


class First(Handler):
    PRIORITY = 1000

    def access(self, call: Any) -> None:
        call.ctx["first.user"] = call.path


class Second(Handler):
    PRIORITY = 10

    def access(self, call: Any) -> None:
        Seen.entries.append(("access", call.ctx.get("first.user")))
        call.ctx["second.started"] = "yes"

    def header_filter(self, call: Any) -> None:
        Seen.entries.append(("header_filter", dict(call.ctx)))

    def meter(self, call: Any) -> None:
        Seen.entries.append(("meter", dict(call.ctx)))

    def log(self, call: Any) -> None:
        Seen.entries.append(("log", dict(call.ctx)))


def test_ctx_is_shared_between_the_phases_and_the_plugins_of_a_call(proxy, recording_upstream, monkeypatch):
    Seen.entries = []
    use(monkeypatch, key_auth=First, billable=Second)
    one_route(proxy, recording_upstream.port, [plugin("key-auth"), plugin("billable")])
    for path in ("/a/one", "/a/two"):
        assert request(proxy.port, "GET", path).status == 200
    settle(proxy)
    ctx_one = {"first.user": "/a/one", "second.started": "yes"}
    ctx_two = {"first.user": "/a/two", "second.started": "yes"}
    assert Seen.entries == [("access", "/a/one"), ("header_filter", ctx_one), ("meter", ctx_one), ("log", ctx_one),
                            ("access", "/a/two"), ("header_filter", ctx_two), ("meter", ctx_two), ("log", ctx_two)]


def test_a_call_whose_plugins_never_ask_for_ctx_has_none_made():
    call = Call(b"GET", "/", "", [], "127.0.0.1", 0.0, 0.0)
    assert call.context is None
    call.ctx["k"] = 1
    assert call.context == {"k": 1} and call.ctx is call.context
