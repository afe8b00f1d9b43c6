"""Connections to upstreams: the keep-alive pool, DNS cache, and the upstream-side protocol.

    UpstreamPool            idle keep-alive connections per PoolKey(scheme, host, port, verify)
    ├── Resolver            names resolved with c-ares, kept for their TTL (tollway.proxy.dns)
    └── UpstreamConnection  asyncio.Protocol + httptools response parser; hands the response to
                            the client side (`Exchange` below) as it arrives

Connect errors are raised as `ConnectFailed(kind)` with kind "refused", "dns", "timeout" or "tls",
so the client side can answer as Kong does (503, 503, 504, 502). A response head larger than the
pool's `max_head` (upstream_max_header_size) fails the exchange as "invalid" (502), as does one
llhttp cannot parse.

A read that holds one whole response whose head repeats the connection's last one byte for byte
(an upstream answers alike, but for its Date once a second) is not parsed again: see `_Repeat`.

DNS: a name is resolved when a connection is opened (never per request), within the service's
connect timeout, by `tollway.proxy.dns.Resolver`; a name that cannot be resolved is "dns" (503).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple, Protocol

import httptools

from tollway.proxy.dns import ResolveFailed, Resolver
from tollway.proxy.headers import (
    NAME_OTHER,
    NO_TOKENS,
    RESPONSE_REWRITTEN,
    HeaderNames,
    connection_tokens,
)

__all__ = ["MAX_HEAD_SIZE", "ConnectFailed", "Exchange", "PoolKey", "Target", "UpstreamConnection",
           "UpstreamPool"]

log = logging.getLogger("tollway.proxy")

MAX_HEAD_SIZE = 64 << 10  # bytes of a response head, as the default of upstream_max_header_size

# Connection values that name no header to drop ("keep-alive" names one that is dropped anyway).
_NAMES_NO_HEADER: Final = frozenset([b"close", b"keep-alive"])

# Response header names by what on_header does with them (HeaderNames kinds); every other name in
# RESPONSE_REWRITTEN, and Proxy-* names, are dropped, the rest passed on.
_CONTENT_LENGTH: Final = 2
_TRANSFER_ENCODING: Final = 3
_CONNECTION: Final = 4
_VIA: Final = 5
_UPGRADE: Final = 6
_DROPPED: Final = 7
_RESPONSE_NAMES: Final = {
    **dict.fromkeys(RESPONSE_REWRITTEN, _DROPPED),
    b"content-length": _CONTENT_LENGTH, b"transfer-encoding": _TRANSFER_ENCODING, b"connection": _CONNECTION,
    b"via": _VIA, b"upgrade": _UPGRADE,
}


# A response head longer than this is never kept for a repeat (the head is kept per connection).
_REPEAT_MAX: Final = 4096

# The header lines of kept heads, one tuple object for equal lines on every connection. The
# connections to one service keep equal heads, and the client side compares each response's
# headers with the last ones it joined: with the same tuples, that is an identity check per line.
# (Typed Any: compiled code would unpack a tuple[bytes, bytes] and box it anew, a new object.)
_SHARED_LINES: Final[dict[Any, Any]] = {}
_SHARED_MAX: Final = 4096


def _shared(headers: list[Any]) -> list[Any]:
    if len(_SHARED_LINES) + len(headers) > _SHARED_MAX:
        _SHARED_LINES.clear()  # bounded: a stream of changing values cannot grow it
    return [_SHARED_LINES.setdefault(line, line) for line in headers]


class _HeadTooLarge(Exception):
    """Raised in on_header to stop llhttp; data_received fails the exchange."""


class PoolKey(NamedTuple):
    """What makes two upstream connections interchangeable."""

    scheme: str
    host: str
    port: int
    verify: bool


class Target:
    """How to reach one service, worked out once per configuration rather than per request."""

    __slots__ = ("connect_timeout", "host_header", "key", "read_timeout", "retries", "write_timeout")

    def __init__(self, service: dict[str, Any]) -> None:
        scheme = service.get("protocol") or "http"
        port = int(service.get("port") or 80)
        self.key = PoolKey(scheme, service["host"], port, service.get("tls_verify") is not False)
        host = self.key.host.encode()
        self.host_header = host if port == (443 if scheme == "https" else 80) else b"%s:%d" % (host, port)
        self.connect_timeout = (service.get("connect_timeout") or 60000) / 1000.0
        self.read_timeout = (service.get("read_timeout") or 60000) / 1000.0
        self.write_timeout = (service.get("write_timeout") or 60000) / 1000.0
        self.retries = int(service.get("retries") or 0)


class _Repeat:
    """A response head as llhttp parsed it, kept to recognise the next response that repeats it.

    llhttp's reading of a head depends only on its bytes and on starting between two messages, so
    a read that starts there, holds the same head and then exactly `content_length` bytes is the
    same response with its own body: its callbacks would report what was recorded here. Only a
    plain response is kept: a final status with a body (not 1xx, 204 or 304), framed by
    Content-Length, that kept the connection alive, and not the answer to a HEAD request.
    """

    __slots__ = ("content_length", "head", "headers", "hop_tokens", "size", "status", "via")

    def __init__(self, head: bytes, status: int, headers: list[tuple[bytes, bytes]], content_length: int,
                 hop_tokens: frozenset[bytes], via: bytes) -> None:
        self.head = head
        self.size = len(head) + content_length  # of a read that holds the whole response
        self.status = status
        self.headers = headers      # never handed out: each response gets a copy
        self.content_length = content_length
        self.hop_tokens = hop_tokens
        self.via = via


class ConnectFailed(Exception):
    """Connecting to an upstream failed; `kind` is "refused", "dns", "timeout" or "tls"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Exchange(Protocol):
    """The client side of one request, as an upstream connection reports to it."""

    def upstream_head(self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def upstream_body(self, conn: UpstreamConnection, chunk: bytes) -> None: ...
    def upstream_done(self, conn: UpstreamConnection, keep_alive: bool) -> None: ...
    def upstream_failed(self, conn: UpstreamConnection, kind: str) -> None: ...
    def upstream_tunnel(self, conn: UpstreamConnection, data: bytes) -> None: ...
    def upstream_write_paused(self, paused: bool) -> None: ...
    def upstream_fed(self, conn: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP (or TLS) connection to an upstream, carrying one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: PoolKey, max_head: int = MAX_HEAD_SIZE) -> None:
        # Per-connection state
        self.pool = pool
        self.key = key
        self.max_head = max_head        # bytes a response head may take
        self.loop = pool.loop
        self.clock = pool.clock
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.write_paused = False
        self.reading_paused = False     # pause_reading() was called last (resume_reading() is then needed)
        self.idle_since = 0.0
        self.tunnel = False
        self.names = HeaderNames(_RESPONSE_NAMES)
        self.between = True             # llhttp is between two messages (nothing of a next one fed)
        self.begun = 0                  # messages llhttp began on this connection
        self.repeat: _Repeat | None = None  # a plain response's head, kept (see _Repeat)
        self.seen_head = b""            # the head of the last whole response read at once
        self.seen_again = False         # the read being parsed starts with it
        self.parsed: list[tuple[bytes, bytes]] | None = None  # then its headers as parsed, before anyone saw them

        # Per-exchange state
        self.exchange: Exchange | None = None
        self.head_only = False
        self.status = 0
        # The response head, sorted as it is parsed: `headers` are the end-to-end ones, in order;
        # framing and hop-by-hop headers (tollway.proxy.headers) are recorded, never passed on.
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.via = b""
        self.upgrade_header: tuple[bytes, bytes] | None = None
        self.hop_tokens: frozenset[bytes] = NO_TOKENS  # other header names its Connection lists
        self.informational = False
        # llhttp buffers an incomplete header line itself: the head is bounded by the bytes read
        # while it is incomplete, and by its header lines for a head that arrives in one read.
        self.in_head = False
        self.head_received = 0
        self.head_size = 0
        self.header_index = 0           # position of the next header line in the head being parsed
        self.got_bytes = False
        self.sent_all = False           # the whole request (head and body) was written
        self.done = False
        self.close_delimited = False
        self.reset_parser = False
        self.unsolicited = False        # a response began with no request in flight: never reused
        self.last_activity = 0.0
        self.paused_since = 0.0
        self.read_timeout = 60.0
        self.write_timeout = 60.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0.0

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self.pool.forget(self)
        exchange = self.exchange
        if exchange is None:
            return
        if self.tunnel:
            self.exchange = None
            exchange.upstream_done(self, False)
        elif self.close_delimited and not self.done:
            self.done = True
            self.exchange = None
            exchange.upstream_done(self, False)
        elif not self.done:
            self.exchange = None
            exchange.upstream_failed(self, "closed")

    def eof_received(self) -> bool | None:
        return None  # close: the connection_lost above tells the exchange

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_since = self.loop.time()
        if self.exchange is not None:
            # The write timeout runs from now: the timer must not wait for a later read deadline.
            if self.timer is None or self.timer_due > self.paused_since + self.write_timeout:
                self._arm(self.write_timeout)
            self.exchange.upstream_write_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last_activity = self.clock()
        if self.exchange is not None:
            self.exchange.upstream_write_paused(False)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # An idle connection has nothing to say; whatever it said makes it unusable.
            self.close()
            return
        self.last_activity = self.clock()
        if self.tunnel:
            exchange.upstream_tunnel(self, data)
            return
        self.got_bytes = True
        repeat = self.repeat
        between = self.between
        if (repeat is not None and between and len(data) == repeat.size and not self.head_only
                and data.startswith(repeat.head)):
            self._replay(exchange, repeat, data)
            return
        begun = self.begun
        self.seen_again = between and len(self.seen_head) > 0 and data.startswith(self.seen_head)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.status == 101 and self.exchange is not None:
                self.tunnel = True
                rest = data[exc.args[0]:]
                if rest:
                    exchange.upstream_tunnel(self, rest)
            else:
                self._fail("invalid")
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._head_too_large()
            else:
                self._fail("invalid")
        else:
            # The whole read counts, also the end of a 1xx head that came before this one.
            if self.in_head:
                self.head_received += len(data)
                if self.head_received > self.max_head:
                    self._head_too_large()
            elif between and self.between and self.begun == begun + 1 and self.done and not self.closed:
                self._remember(data)
        if self.unsolicited:
            self.close()  # as nginx does: its extra bytes would be taken for the next request's answer
        if self.exchange is not None:
            self.exchange.upstream_fed(self)
        if self.reset_parser:
            self.reset_parser = False
            self.in_head = False
            self.between = True
            self.parser = httptools.HttpResponseParser(self)

    def _remember(self, data: bytes) -> None:
        """`data` was one whole response and its exchange is complete. Its head is noted; when it
        repeats the one noted before (two in a row) and is plain, it is kept (see _Repeat): heads
        that differ every time cost a slice, not a copy of their headers."""
        parsed = self.parsed
        self.parsed = None
        length = self.content_length
        if length is None or self.chunked or self.upgrade_header is not None or self.tunnel:
            return
        head = data[:len(data) - length]
        if len(head) > _REPEAT_MAX or not head.endswith(b"\r\n\r\n"):
            return
        if parsed is None:  # not seen just before, or not plain (see on_headers_complete)
            self.seen_head = head
            return
        self.repeat = _Repeat(head, self.status, _shared(parsed), length, self.hop_tokens, self.via)

    def _replay(self, exchange: Exchange, repeat: _Repeat, data: bytes) -> None:
        """`data` is one whole response with `repeat`'s head: report what llhttp's callbacks would."""
        status = self.status = repeat.status
        self.informational = False
        self.close_delimited = False
        self.content_length = repeat.content_length
        self.chunked = False
        self.via = repeat.via
        self.upgrade_header = None
        self.hop_tokens = repeat.hop_tokens
        headers = self.headers = repeat.headers.copy()  # a copy: plugins may change the list in place
        exchange.upstream_head(self, status, headers)
        if repeat.content_length and self.exchange is not None:
            self.exchange.upstream_body(self, data[len(repeat.head):])
        if self.exchange is not None:
            self._complete(True)  # llhttp's should_keep_alive(): it was for the same head

    # httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is None:  # more than the response, in the read that completed it
            self.unsolicited = True
        self.between = False
        self.begun += 1
        self.parsed = None
        self.in_head = True
        self.head_received = 0
        self.head_size = 0
        self.header_index = 0
        self.headers = []
        self.content_length = None
        self.chunked = False
        self.via = b""
        self.upgrade_header = None
        self.hop_tokens = NO_TOKENS

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4  # ": " and CRLF
        if self.head_size > self.max_head:
            raise _HeadTooLarge
        kind = self.names.lookup(self.header_index, name)[1]
        self.header_index += 1
        if kind == NAME_OTHER:
            self.headers.append((name, value))
        elif kind == _CONTENT_LENGTH:
            try:
                self.content_length = int(value)
            except ValueError:
                self.content_length = None
        elif kind == _TRANSFER_ENCODING:
            self.chunked = self.chunked or value.lower().find(b"chunked") >= 0  # not `in`: see protocol.py
        elif kind == _CONNECTION:
            if value.lower() not in _NAMES_NO_HEADER:
                tokens = connection_tokens(value) - RESPONSE_REWRITTEN - _NAMES_NO_HEADER
                if tokens:
                    self.hop_tokens = self.hop_tokens | tokens
        elif kind == _VIA:
            self.via = value if not self.via else self.via + b", " + value
        elif kind == _UPGRADE:
            self.upgrade_header = (name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        status = self.parser.get_status_code()
        self.status = status
        self.informational = 100 <= status < 200 and status != 101
        if self.informational or self.exchange is None:
            return
        self.close_delimited = (status >= 200 and status not in (204, 304) and not self.head_only
                                and self.content_length is None and not self.chunked)
        if (self.seen_again and self.content_length is not None and status >= 200 and status not in (204, 304)
                and not self.head_only):
            self.parsed = self.headers.copy()  # a plain head seen just before: it may be kept (_remember)
        self.exchange.upstream_head(self, status, self.headers)
        if self.head_only and self.exchange is not None:
            # llhttp cannot be told the request was HEAD: complete the exchange here and give
            # the connection a fresh parser, as a Content-Length body will never come.
            self.reset_parser = True
            self._complete(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None and not self.informational:
            self.exchange.upstream_body(self, body)

    def on_message_complete(self) -> None:
        self.between = True
        if self.informational or self.exchange is None or self.status == 101:
            return
        self._complete(self.parser.should_keep_alive())

    # The exchange ------------------------------------------------------------------------------

    def begin(self, exchange: Exchange, head_only: bool, read_timeout: float, write_timeout: float) -> None:
        """Start carrying one request for `exchange`."""
        self.exchange = exchange
        self.head_only = head_only
        self.status = 0
        self.got_bytes = False
        self.sent_all = False
        self.done = False
        self.close_delimited = False
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        now = self.last_activity = self.clock()
        # One timer per connection, re-armed only when it would fire too late for this exchange:
        # a kept-alive connection carrying request after request arms it about once per timeout.
        due = now + min(read_timeout, write_timeout)
        if self.timer is None or self.timer_due > due:
            self._arm(due - now)

    def request_sent(self) -> None:
        """The whole request was written: the read timeout runs from now."""
        self.sent_all = True
        self.last_activity = self.clock()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines(parts)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def detach(self) -> None:
        """The exchange gives up on this connection (client gone, or an error): close it."""
        self.exchange = None
        self.close()

    def close(self) -> None:
        self._cancel_timer()
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def _complete(self, keep_alive: bool) -> None:
        exchange = self.exchange
        self.done = True
        self.exchange = None
        reusable = keep_alive and self.sent_all and not self.tunnel
        if exchange is not None:
            exchange.upstream_done(self, reusable)
        if reusable and not self.closed:
            self.pool.release(self)
        else:
            self.close()

    def _head_too_large(self) -> None:
        self.in_head = False
        log.warning("upstream %s:%d sent a response head over upstream_max_header_size (%d bytes)",
                    self.key.host, self.key.port, self.max_head)
        self._fail("invalid")

    def _fail(self, kind: str) -> None:
        exchange = self.exchange
        self.exchange = None
        self.abort()
        if exchange is not None:
            exchange.upstream_failed(self, kind)

    # Timeouts: one timer per exchange, re-armed lazily from the last activity ---------------------

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        delay = max(delay, 0.001)
        self.timer_due = self.loop.time() + delay
        self.timer = self.loop.call_later(delay, self._check_timeout)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_timeout(self) -> None:
        self.timer = None
        if self.exchange is None or self.tunnel:
            return
        now = self.loop.time()
        if self.write_paused:
            deadline = self.paused_since + self.write_timeout
        elif not self.sent_all:
            # The client is still sending its body at its own pace: nothing to time out here.
            self._arm(self.read_timeout)
            return
        else:
            deadline = self.last_activity + self.read_timeout
        if now >= deadline:
            log.info("upstream %s:%d timed out", self.key.host, self.key.port)
            self._fail("timeout")
        else:
            self._arm(deadline - now)


Connector = Callable[[PoolKey, float], Awaitable[UpstreamConnection]]


class UpstreamPool:
    """Keep-alive connections per PoolKey: at most `size` idle ones, each for `idle_timeout` s.

    Idle connections sit in a list, oldest first, with the time they went idle (a list, not a
    deque: mypyc compiles its append and pop, the two operations of every request); a stale one is
    dropped when taken, and a cleanup timer (running only while something is idle) closes the rest.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, idle_timeout: float,
                 resolver: Resolver | None = None, connect: Connector | None = None,
                 max_head: int = MAX_HEAD_SIZE) -> None:
        if size < 0 or idle_timeout < 0 or max_head < 1:
            raise ValueError(f"expected size >= 0, idle_timeout >= 0 and max_head >= 1, "
                             f"got {size}, {idle_timeout}, {max_head}")
        self.loop = loop
        self.clock: Callable[[], float] = loop.time  # bound once: a call, not a method lookup
        self.size = size
        self.idle_timeout = idle_timeout
        self.max_head = max_head  # bytes a response head may take, given to each connection
        self.resolver = resolver or Resolver()
        self._connect = connect or self._open
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self._last_key: PoolKey | None = None
        self._last_idle: list[UpstreamConnection] = []
        self._cleanup: asyncio.TimerHandle | None = None
        self._contexts: dict[bool, ssl.SSLContext] = {}

    def _idle_list(self, key: PoolKey) -> list[UpstreamConnection]:
        """The idle connections of `key`. The last key asked for is remembered by identity (a
        Target and its connections share one PoolKey object), which spares hashing the tuple."""
        if key is self._last_key:
            return self._last_idle
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []  # never removed: at most one list per service ever proxied to
        self._last_key = key
        self._last_idle = idle
        return idle

    def take(self, key: PoolKey) -> UpstreamConnection | None:
        """An idle connection for `key`, or None. Stale or closed ones are dropped on the way."""
        idle = self._idle_list(key)
        if not idle:
            return None
        oldest_allowed = self.clock() - self.idle_timeout
        while idle:
            conn = idle.pop()
            if conn.closed or conn.idle_since < oldest_allowed:
                conn.close()
                continue
            return conn
        return None

    async def connect(self, key: PoolKey, timeout: float) -> UpstreamConnection:
        """A new connection; raises ConnectFailed."""
        return await self._connect(key, timeout)

    def release(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange completed cleanly, if there is room."""
        if conn.closed:
            return
        idle = self._idle_list(conn.key)
        if len(idle) >= self.size:
            conn.close()
            return
        conn.idle_since = self.clock()
        conn.resume_reading()
        idle.append(conn)
        if self._cleanup is None:
            self._cleanup = self.loop.call_later(self.idle_timeout, self._sweep)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle:
            try:
                idle.remove(conn)
            except ValueError:
                pass

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        """Close every idle connection."""
        if self._cleanup is not None:
            self._cleanup.cancel()
            self._cleanup = None
        for idle in list(self._idle.values()):
            while idle:
                idle.pop().close()

    def _sweep(self) -> None:
        self._cleanup = None
        oldest_allowed = self.clock() - self.idle_timeout
        for idle in self._idle.values():
            while idle and idle[0].idle_since < oldest_allowed:
                idle.pop(0).close()
        if any(self._idle.values()):
            self._cleanup = self.loop.call_later(max(self.idle_timeout / 2, 0.5), self._sweep)

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        context = self._contexts.get(verify)
        if context is None:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[verify] = context
        return context

    async def _open(self, key: PoolKey, timeout: float) -> UpstreamConnection:
        deadline = self.loop.time() + timeout  # for the lookup and the connection together
        try:
            async with asyncio.timeout_at(deadline):
                address = await self.resolver.resolve(key.host)
        except TimeoutError as exc:
            raise ConnectFailed("dns", f"resolving {key.host} timed out") from exc
        except ResolveFailed as exc:
            raise ConnectFailed("dns", str(exc)) from exc
        tls: dict[str, Any] = {}
        if key.scheme == "https":
            tls = {"ssl": self._ssl_context(key.verify), "server_hostname": key.host}
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self, key, self.max_head), address, key.port, **tls)
        except TimeoutError as exc:
            raise ConnectFailed("timeout", f"connecting to {key.host}:{key.port} timed out") from exc
        except ssl.SSLError as exc:
            raise ConnectFailed("tls", f"TLS handshake with {key.host}:{key.port} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectFailed("refused", f"cannot connect to {key.host}:{key.port}: {exc}") from exc
        return conn
