"""The proxy under test: a ProxyServer on a uvloop loop in a background thread, real sockets.

`proxy` gives a running `ProxyHarness` (apply snapshots, read stats, drain); the `snap` helpers
build Kong-shaped entities. A `Recorder` stands in for the billable handler so tests can see every
`meter` and `log` call.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.conftest import free_port
from tollway.config import Settings, load_settings
from tollway.plugins.base import Handler
from tollway.proxy import chain as chain_module
from tollway.proxy.server import ProxyServer


class Recorder(Handler):
    """A billable stand-in: records (status, request_bytes, response_bytes, consumer) per meter call."""

    PRIORITY = 5
    metered: list[dict[str, Any]] = []
    logged: list[dict[str, Any]] = []
    addresses: list[tuple[str, str]] = []  # (client_ip, forwarded_ip) per meter call

    def meter(self, call: Any) -> None:
        Recorder.addresses.append((call.client_ip, call.forwarded_ip))
        Recorder.metered.append({
            "status": call.status, "request_bytes": call.request_bytes,
            "response_bytes": call.response_bytes, "path": call.path,
            "consumer": (call.consumer or {}).get("username"), "route": call.route.get("name"),
        })

    def log(self, call: Any) -> None:
        Recorder.logged.append({"status": call.status, "path": call.path})


class ProxyHarness:
    """A ProxyServer serving 127.0.0.1:`port` from its own thread and event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ProxyServer(settings)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.call(self.server.serve(self.sock))

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def apply(self, snapshot: dict[str, Any]) -> None:
        async def apply() -> None:
            self.server.apply(snapshot)
        self.call(apply())

    def drain_async(self, timeout: float) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(self.server.drain(timeout), self.loop)

    @property
    def stats(self) -> dict[str, int]:
        async def stats() -> dict[str, int]:
            return self.server.stats
        return self.call(stats())  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self.call(self.server.drain(1.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.sock.close()


def make_proxy_settings(tmp_path: Path, **overrides: str) -> Settings:
    values = {"prefix": str(tmp_path), "proxy_listen": f"127.0.0.1:{free_port()}"}
    values.update(overrides)
    return load_settings(environ={}, **values)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.metered = []
    Recorder.logged = []
    Recorder.addresses = []
    monkeypatch.setitem(chain_module._CLASSES, "billable", Recorder)
    return Recorder


@pytest.fixture
def proxy(tmp_path: Path, recorder: type[Recorder]) -> Iterator[ProxyHarness]:
    harness = ProxyHarness(make_proxy_settings(tmp_path))
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def make_proxy(tmp_path: Path, recorder: type[Recorder]) -> Iterator[Any]:
    """A factory of ProxyHarness with settings overrides (`client_max_body_size="1k"`), closed after the test."""
    made: list[ProxyHarness] = []

    def make(**overrides: str) -> ProxyHarness:
        harness = ProxyHarness(make_proxy_settings(tmp_path, **overrides))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


# Kong-shaped entities ----------------------------------------------------------------------------

def new_id() -> str:
    return str(uuid.uuid4())


def service(port: int, *, host: str = "127.0.0.1", path: str | None = None, name: str | None = None,
            **extra: Any) -> dict[str, Any]:
    entity = {"id": new_id(), "name": name, "protocol": "http", "host": host, "port": port, "path": path,
              "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
              "enabled": True, "tls_verify": None, "tags": None}
    entity.update(extra)
    return entity


def route(svc: dict[str, Any], paths: list[str] | None = None, *, name: str | None = None,
          **extra: Any) -> dict[str, Any]:
    entity = {"id": new_id(), "name": name, "service": {"id": svc["id"]}, "protocols": ["http", "https"],
              "methods": None, "hosts": None, "paths": paths, "headers": None, "strip_path": True,
              "preserve_host": False, "regex_priority": 0, "path_handling": "v0"}
    entity.update(extra)
    return entity


def plugin(name: str, config: dict[str, Any] | None = None, *, service: dict[str, Any] | None = None,
           route: dict[str, Any] | None = None, consumer: dict[str, Any] | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if name == "key-auth":
        defaults = {"key_names": ["apikey"], "hide_credentials": False, "anonymous": None,
                    "key_in_header": True, "key_in_query": True, "key_in_body": False,
                    "run_on_preflight": True}
    defaults.update(config or {})
    return {"id": new_id(), "name": name, "enabled": True, "config": defaults,
            "service": {"id": service["id"]} if service else None,
            "route": {"id": route["id"]} if route else None,
            "consumer": {"id": consumer["id"]} if consumer else None}


def consumer(username: str, custom_id: str | None = None) -> dict[str, Any]:
    return {"id": new_id(), "username": username, "custom_id": custom_id}


def credential(owner: dict[str, Any], key: str) -> dict[str, Any]:
    return {"id": new_id(), "consumer": {"id": owner["id"]}, "key": key}


def snapshot(services: list[dict[str, Any]], routes: list[dict[str, Any]], *,
             plugins: list[dict[str, Any]] | None = None, consumers: list[dict[str, Any]] | None = None,
             credentials: list[dict[str, Any]] | None = None, version: int = 1) -> dict[str, Any]:
    return {"version": version, "services": services, "routes": routes, "consumers": consumers or [],
            "plugins": plugins or [], "keyauth_credentials": credentials or []}


# Clients and small upstreams ---------------------------------------------------------------------

class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        import json
        return json.loads(self.body)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 10) -> Response:
    """One request on a fresh connection with http.client."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, until: bytes | None = None, timeout: float = 5) -> bytes:
    """Send raw bytes; read until the peer closes, `until` was seen, or a pause of `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if until is not None and received.count(until) >= 1 and received.endswith(until):
                break
        return received


def read_until_close(sock: socket.socket) -> tuple[bytes, bool]:
    """What a socket receives until the peer closes (True) or stays silent for its timeout (False)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk


def send_in_reads(port: int, pieces: list[bytes], timeout: float = 3) -> tuple[bytes, bool]:
    """Send each piece as its own read (a pause between them); read until close (True) or silence."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.05)
        return read_until_close(sock)


class RawUpstream:
    """An asyncio TCP (or, with `ssl`, TLS) server in its own thread; `handler(reader, writer)` runs
    per connection."""

    def __init__(self, handler: Any, ssl: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.connections = 0

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(counted, "127.0.0.1", 0, ssl=ssl)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    """A request head read by a RawUpstream handler: request line and lower-cased headers."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    line, *lines = head.split("\r\n")
    headers = {}
    for item in lines:
        if item:
            name, _, value = item.partition(":")
            headers[name.strip().lower()] = value.strip()
    return line, headers


@pytest.fixture
def raw_upstreams() -> Iterator[Any]:
    """A factory of RawUpstream servers, all closed after the test."""
    made: list[RawUpstream] = []

    def make(handler: Any, ssl: Any = None) -> RawUpstream:
        upstream = RawUpstream(handler, ssl)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.close()


class RecordingUpstream:
    """An upstream that records every byte it receives and answers each request head with 200 "ok"
    (or with `response`).

    Tests of refused requests assert that `received` stays empty: nothing reached the upstream;
    `answered` counts the requests that arrived whole.
    """

    def __init__(self, make: Any, response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        self.received = b""
        self.answered = 0
        self.response = response
        self.upstream = make(self._serve)
        self.port = self.upstream.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            self.received += data
            pending += data
            while b"\r\n\r\n" in pending:
                head, _, pending = pending.partition(b"\r\n\r\n")
                length, chunked = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    chunked = chunked or name.strip().lower() == b"transfer-encoding"
                while (b"0\r\n\r\n" not in pending) if chunked else (len(pending) < length):
                    more = await reader.read(65536)
                    if not more:
                        return
                    self.received += more
                    pending += more
                pending = pending.partition(b"0\r\n\r\n")[2] if chunked else pending[length:]
                self.answered += 1
                writer.write(self.response)

    @property
    def requests(self) -> int:
        return self.received.count(b" HTTP/1.1\r\n")


@pytest.fixture
def recording_upstream(raw_upstreams: Any) -> RecordingUpstream:
    return RecordingUpstream(raw_upstreams)


def exchange(port: int, data: bytes, timeout: float = 5) -> tuple[bytes, bool]:
    """Send raw bytes; read until the proxy closes (True) or stays silent for `timeout` (False)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the proxy may close before reading everything
        return read_until_close(sock)
