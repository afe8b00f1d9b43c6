"""One connection to an upstream: `UpstreamConnection`, an asyncio.Protocol with llhttp's response
parser, carrying one exchange at a time and reporting the response to its client side
(an `UpstreamListener`) as it arrives.

The response head is sorted as it is parsed (on_header): end-to-end headers are kept in order,
framing and hop-by-hop ones (tollway.proxy.headers) recorded and never passed on. A head larger
than `max_head` (upstream_max_header_size) fails the exchange as "invalid" (502), as does one
llhttp cannot parse. A read that holds one whole response whose head repeats the connection's
last one byte for byte is not parsed again (tollway.proxy.response_repeat).

Timeouts: one timer per connection, re-armed lazily from the last activity (the read timeout), or
from when the upstream stopped reading (the write timeout).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import httptools
from mypy_extensions import mypyc_attr

from tollway.proxy.headers import (
    NAME_OTHER,
    NO_TOKENS,
    RESPONSE_REWRITTEN,
    HeaderNames,
    connection_tokens,
)
from tollway.proxy.response_repeat import KeptResponse, ResponseRepeats
from tollway.proxy.upstream_target import PoolKey

__all__ = ["MAX_HEAD_SIZE", "Keeper", "UpstreamConnection", "UpstreamListener"]

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


class _HeadTooLarge(Exception):
    """Raised in on_header to stop llhttp; data_received fails the exchange."""


@mypyc_attr(allow_interpreted_subclasses=True)  # tests report to plain Python listeners
class UpstreamListener:
    """The client side of one exchange, as an upstream connection reports to it
    (tollway.proxy.exchange.Exchange). A class rather than a Protocol, so that compiled code calls
    it natively (docs/architecture.md, Performance notes: native calls)."""

    def upstream_head(self, upstream: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The response head: its status, and its end-to-end headers (a list the listener may change)."""
        raise NotImplementedError

    def upstream_body(self, upstream: UpstreamConnection, chunk: bytes) -> None:
        raise NotImplementedError

    def upstream_done(self, upstream: UpstreamConnection, keep_alive: bool) -> None:
        """The response is complete (`keep_alive`: the connection goes back to the pool)."""
        raise NotImplementedError

    def upstream_failed(self, upstream: UpstreamConnection, kind: str) -> None:
        """The exchange failed before its response was complete: "closed", "invalid" or "timeout"."""
        raise NotImplementedError

    def upstream_tunnel(self, upstream: UpstreamConnection, data: bytes) -> None:
        """Bytes of the upstream's side of a WebSocket."""
        raise NotImplementedError

    def upstream_write_paused(self, paused: bool) -> None:
        raise NotImplementedError

    def upstream_fed(self, upstream: UpstreamConnection) -> None:
        """The connection's latest read is parsed (and the exchange not complete)."""
        raise NotImplementedError


class Keeper:
    """The pool as its connections see it (UpstreamPool): it keeps a connection whose exchange
    completed cleanly, and forgets one that closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clock: Callable[[], float] = loop.time  # Performance notes: bound once

    def release(self, conn: UpstreamConnection) -> None:
        raise NotImplementedError

    def forget(self, conn: UpstreamConnection) -> None:
        raise NotImplementedError


class UpstreamConnection(asyncio.Protocol):
    """One TCP (or TLS) connection to an upstream, carrying one exchange at a time."""

    def __init__(self, pool: Keeper, key: PoolKey, max_head: int = MAX_HEAD_SIZE) -> None:
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
        self.between_messages = True    # nothing of a next message was fed to llhttp since the last one ended
        self.messages_begun = 0         # by llhttp on this connection
        self.repeats = ResponseRepeats()

        # Per-exchange state
        self.exchange: UpstreamListener | None = None
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
        between = self.between_messages
        if between and not self.head_only:
            kept = self.repeats.replayable(data)
            if kept is not None:
                self._replay(exchange, kept, data)
                return
            self.repeats.note_read(data)
        else:
            self.repeats.starts_with_seen = False
        begun = self.messages_begun
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
            elif (between and self.between_messages and self.messages_begun == begun + 1 and self.done
                  and not self.closed):
                self._remember(data)
        if self.unsolicited:
            self.close()  # as nginx does: its extra bytes would be taken for the next request's answer
        if self.exchange is not None:
            self.exchange.upstream_fed(self)
        if self.reset_parser:
            self.reset_parser = False
            self.in_head = False
            self.between_messages = True
            self.parser = httptools.HttpResponseParser(self)

    def _remember(self, data: bytes) -> None:
        """`data` was one whole response and its exchange is complete: a plain one may be kept."""
        length = self.content_length
        if length is None or self.chunked or self.upgrade_header is not None or self.tunnel:
            self.repeats.candidate = None
            return
        self.repeats.remember(data, self.status, length, self.hop_tokens, self.via)

    def _replay(self, exchange: UpstreamListener, repeat: KeptResponse, data: bytes) -> None:
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
        self.between_messages = False
        self.messages_begun += 1
        self.repeats.candidate = None
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
            self.chunked = self.chunked or value.lower().find(b"chunked") >= 0  # find, not in (Performance notes)
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
        if (self.repeats.starts_with_seen and self.content_length is not None and status >= 200
                and status not in (204, 304) and not self.head_only):
            self.repeats.candidate = self.headers.copy()  # a plain head seen just before: it may be kept
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
        self.between_messages = True
        if self.informational or self.exchange is None or self.status == 101:
            return
        self._complete(self.parser.should_keep_alive())

    # The exchange ------------------------------------------------------------------------------

    def begin(self, exchange: UpstreamListener, head_only: bool, read_timeout: float, write_timeout: float) -> None:
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
