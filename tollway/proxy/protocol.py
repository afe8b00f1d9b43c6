"""The client side of the proxy: one `ClientProtocol` per client connection.

httptools calls `on_url`, `on_header`, `on_headers_complete`, `on_body` and
`on_message_complete` as bytes arrive; each request head becomes a `Call`. Requests are served in
order: while one is in flight, later pipelined ones wait in `pipeline` (and reading pauses). A
request's cycle is: route → plugins' access phase → an upstream connection from the pool (the
request head and body are streamed to it) → the response streamed back, framed for this client.

Flow control is symmetric: when the upstream's write buffer fills, the client's reading pauses,
and when the client's write buffer fills, the upstream's reading pauses, so a body of any size
passes through in bounded memory.

Every request on a matched route is metered exactly once, just before the last byte of its
response is written (or when the client goes away, or when the upstream fails after bytes were
sent, which closes the connection).

Hostile input: llhttp (strict, no lenient flags) already refuses Content-Length together with
Transfer-Encoding, duplicate or malformed Content-Lengths, bad chunk sizes, obs-fold, bare LF, NUL
and control bytes, and a final coding other than chunked. The callbacks add what it lets through
(see `Rejected`): a Transfer-Encoding other than exactly `chunked`, Transfer-Encoding in HTTP/1.0,
non-ASCII header values, a missing or repeated Host, CONNECT, HTTP versions other than 1.0 and
1.1, an Upgrade request with a body, more than MAX_PIPELINE requests waiting behind the one being
answered, and the size limits of the settings. A request is started only
once the bytes of the read that completed its head were all parsed, so a request that breaks later
in the same read never reaches an upstream. A refused request is answered in Kong's error shape
(after the responses of the requests before it) and the connection is closed; it is metered only
when it had been routed (a body that breaks or grows too large mid-stream).

A read that holds one whole request whose head repeats the connection's last plain one byte for
byte, but for its target, is not parsed again: see `_Repeat`.

Timeouts (a head that takes too long, an idle keep-alive connection) are enforced by the server's
sweep (`check_timeouts`), so the request path arms no timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import httptools

from tollway.plugins.base import Reply
from tollway.proxy import responses
from tollway.proxy.call import Call
from tollway.proxy.chain import Chain, run_access, run_body_filter, run_header_filter, run_log, run_meter
from tollway.proxy.headers import (
    NO_TOKENS,
    HeaderNames,
    JoinedLines,
    connection_tokens,
    forwarded_blocks,
    forwarded_prefix_line,
    request_header_lines,
    response_head,
    same_items,
    upstream_request_head,
)
from tollway.proxy.state import ProxyCore, State
from tollway.proxy.upstream import ConnectFailed, Target, UpstreamConnection

__all__ = ["ClientProtocol"]

log = logging.getLogger("tollway.proxy")

HIGH_WATER: Final = 64 * 1024    # request body bytes queued while no upstream can take them
REPLAY_LIMIT: Final = 64 * 1024  # request bodies up to this size are kept for a retry
IDEMPOTENT: Final = frozenset(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"])

MAX_PIPELINE: Final = 64         # requests parsed ahead of the one being answered
LINGER: Final = 2.0              # seconds a refused client's bytes are still read and dropped
DRAIN_IDLE_GRACE: Final = 0.5    # seconds an idle connection of a draining worker may still send a request

# Reads up to this size are scanned once for non-ASCII bytes (see data_received).
_ASCII_SCAN: Final = 8192

# What a target may hold to be taken without llhttp (_Repeat): RFC 3986's path and query characters.
# As a translate() table, which leaves those bytes as they are and changes every other one (a
# table costs a pass over the target; deletechars would first build a table, on every call).
_TARGET_BYTES: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%"
_PLAIN_TARGET: Final = bytes(byte if byte in _TARGET_BYTES else (byte + 1) % 256 for byte in range(256))
_REPEAT_MAX: Final = 4096  # bytes of a request head kept for a repeat (one per connection)

# Request headers the protocol looks at while parsing (their HeaderNames kind).
_SPECIAL: Final = 2
_SPECIAL_NAMES: Final = dict.fromkeys([b"host", b"content-length", b"transfer-encoding", b"expect", b"connection",
                                       b"upgrade"], _SPECIAL)

# Bytes are searched with find(), not `in`: CPython 3.11's bytes.__contains__ first tries its
# argument as an integer and raises (and clears) a TypeError for every bytes argument, which cost
# about 5% of a request's instructions here.

# What a Host header may hold (RFC 3986 reg-name or IP literal, and a port): no '/', '\\', '@',
# '?', '#' or space, which would make it a path, a user or a query wherever the host is reused.
_HOST_BYTES: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"

# What a trusted client (settings.trusted_ips) may say of the request it passes on.
_FORWARDED: Final = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path",
                     b"x-forwarded-prefix")
_NOT_FORWARDED: Final = (b"", b"", b"", b"", b"")
_NO_HEADERS: Final[dict[bytes, bytes]] = {}  # what routing sees when no route matches on headers (never written)

# Output framing of a response.
_NO_BODY: Final = 0
_LENGTH: Final = 1
_CHUNKED: Final = 2
_UNTIL_CLOSE: Final = 3

_FAILURES: Final = {
    "refused": (503, responses.MSG_UNAVAILABLE),
    "dns": (503, responses.MSG_NO_NAME),
    "timeout": (504, responses.MSG_TIMEOUT),
    "tls": (502, responses.MSG_BAD_GATEWAY),
    "invalid": (502, responses.MSG_BAD_GATEWAY),
    "closed": (502, responses.MSG_BAD_GATEWAY),
}


def _without_port(host: bytes) -> bytes:
    """A Host header's host: `name:port` and `[v6]:port` lose the port, `[v6]` stays whole."""
    colon = host.rfind(b":")
    return host[:colon] if colon >= 0 and not host.endswith(b"]") else host


class Rejected(Exception):
    """Raised in a parser callback: the request is refused with `status` before reaching an upstream."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Repeat:
    """A request head as llhttp parsed it, kept to recognise the next request that repeats it.

    A client sends the same headers on request after request; only its target changes. llhttp's
    reading of a header section depends only on its bytes, the method and the version, so a read
    that starts between two messages and is `lead`, a target of plain path and query characters,
    then `tail`, is the same request for another target. Only a plain request is kept: HTTP/1.1,
    no body, and no header the protocol acts on but Host.
    """

    __slots__ = ("head_size", "headers", "lead", "method", "special", "tail")

    def __init__(self, method: bytes, tail: bytes, headers: list[tuple[bytes, bytes]], special: dict[bytes, bytes],
                 head_size: int) -> None:
        self.method = method
        self.lead = method + b" "  # what the read starts with
        self.tail = tail            # and ends with: " HTTP/1.1" CRLF, the header lines, CRLF
        self.headers = headers      # never handed out: each request gets a copy
        self.special = special      # only read once parsed
        self.head_size = head_size  # of the header lines (on_header's count), the target not included


class ClientProtocol(asyncio.Protocol):
    """Serves one client connection: parses requests, proxies them, writes responses."""

    def __init__(self, server: ProxyCore) -> None:
        # Per-connection state
        self.server = server
        self.loop = server.loop
        self.clock: Callable[[], float] = server.loop.time  # bound once: a call, not a method lookup
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.tls = server.ssl_context is not None
        self.proto_b = b"https" if self.tls else b"http"
        (self.max_head, self.max_headers, self.max_url, self.max_body) = server.limits
        self.client_ip = ""
        self.client_ip_b = b""
        self.local_port_b = b""
        self.own_forwarded: tuple[bytes, bytes, bytes] | None = None  # forwarded_blocks() of an untrusted client
        self.trusted = False            # its X-Forwarded-* headers are passed on (settings.trusted_ips)
        self.read_paused = False
        self.write_paused = False
        self.closing = False            # close once the current response is complete
        self.lost = False
        self.refused = False            # over worker_connections: closed as soon as accepted
        self.tunnel: Call | None = None  # a WebSocket call whose bytes now flow raw
        self.upgrading: Call | None = None  # the call whose head asked for an Upgrade
        self.rejecting = False          # a request was refused: nothing more is read
        self.deferred: Rejected | None = None  # a refusal answered once earlier requests are done
        self.start_pending = False      # `current` starts once the read that completed it is parsed
        # Checked once per read instead of once per header (see data_received)
        self.head_ascii = False         # every byte of the head being parsed is ASCII
        self.line_11 = False            # the message that begins this read has an HTTP/1.1 request line
        self.head_11 = False            # ... and that message is the one being parsed
        self.valid_host = b""           # the last Host header found valid on this connection,
        self.valid_bare = b""           # ... without its port,
        self.valid_name = ""            # ... and that as a lower-cased str, for routing

        # Timeouts (see check_timeouts): what the last sweep saw, and until when it may last
        self.in_head = False            # a request head has begun and is not complete
        self.head_received = 0          # bytes read while that head was incomplete
        self.completed = 0              # request messages parsed on this connection
        self.watched: tuple[int, int] | None = None
        self.deadline = 0.0

        # Request cycle state
        self.current: Call | None = None  # the request being answered
        self.parsing: Call | None = None  # the request whose body is being parsed
        self.pipeline: deque[Call] = deque()

        # Per-request parse state
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.special: dict[bytes, bytes] = {}
        self.head_size = 0
        self.names = HeaderNames(_SPECIAL_NAMES)
        self.head_call: Call | None = None  # the Call of the last head parsed
        self.repeat: _Repeat | None = None  # a plain request's head, kept (see _Repeat)
        self.seen_tail = b""            # the last whole request read at once, from " HTTP/1.1" on
        # The last request's headers as sent on, and their request_header_lines()
        self.sent_headers: list[tuple[bytes, bytes]] = []
        self.sent_tokens: frozenset[bytes] = NO_TOKENS
        self.sent_lines = (b"", b"", b"")
        self.response_lines = JoinedLines()  # the upstreams' response header lines, as last joined
        self.length_size = -1           # the last Content-Length line (_length_line)
        self.length_line = b""
        self.upstream_ms = -1           # the last latency lines (_latency_lines)
        self.proxy_ms = -1
        self.latency_lines = b""

        # Per-response state (of `current`)
        self.out_mode = _NO_BODY
        self.remaining = 0
        # A response head not yet written: it goes out with the first body bytes, in one write,
        # or when the upstream's read that carried it has been parsed (`upstream_fed`).
        self.held: bytes | None = None

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client_ip = str(peer[0]) if peer else "127.0.0.1"
        self.client_ip_b = self.client_ip.encode()
        self.local_port_b = str(sock[1]).encode() if sock else b"80"
        self.trusted = bool(self.server.trusted_networks) and self.server.trusts(self.client_ip)
        if not self.trusted:
            self.own_forwarded = forwarded_blocks(self.client_ip_b, self.proto_b, self.local_port_b)
        if not self.server.connection_opened(self):
            self.refused = self.lost = True
            self.transport.abort()  # over worker_connections

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.lost = True
        self.server.connection_closed(self)
        call = self.current
        self.current = None
        self.pipeline.clear()
        if call is not None and not call.response_done:
            call.response_done = True
            if not call.head_sent:
                call.status = 499  # nginx's code for a client that went away
            if call.upstream is not None:
                call.upstream.detach()
                call.upstream = None
            run_meter(call)
            run_log(call)

    def eof_received(self) -> bool | None:
        # A half-closed client still gets the response in flight, then the connection closes;
        # unless its request body is incomplete, which it can no longer be.
        if self.current is not None and not self.tunnel and self.parsing is None:
            self.closing = True
            return True
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        call = self.current
        if call is not None and call.upstream is not None:
            call.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        call = self.current
        if call is not None and call.upstream is not None:
            call.upstream.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self._tunnel_up(data)
            return
        if self.rejecting:
            return
        fresh = self.parsing is None  # no body in progress: these bytes begin in (or before) a head
        completed = self.completed
        in_head = self.in_head
        repeat = self.repeat
        if repeat is not None and fresh and not in_head and data.endswith(repeat.tail) and data.startswith(repeat.lead):
            target = data[len(repeat.lead):len(data) - len(repeat.tail)]
            if (target.startswith(b"/") and target.translate(_PLAIN_TARGET) == target
                    and len(target) <= self.max_url and len(target) + repeat.head_size <= self.max_head):
                self._replay(repeat, target)
                return
        # Two per-read checks that spare per-header work. A head whose bytes are all ASCII needs no
        # check of each value; a small read is scanned whole, once.
        self.head_ascii = len(data) <= _ASCII_SCAN and data.isascii() and (not in_head or self.head_ascii)
        # A read that begins a message (not a body, not a head's continuation): when its first line
        # ends in " HTTP/1.1", that is the version llhttp parses (a request target has no spaces),
        # which spares parser.get_http_version(), a str.format per call. Anything else asks it.
        if fresh and not in_head:
            eol = data.find(b"\r\n")
            self.line_11 = eol > 9 and data[eol - 9:eol] == b" HTTP/1.1"
        else:
            self.line_11 = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0]:])
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc.__context__)
            return
        except httptools.HttpParserError as exc:
            log.debug("bad request from %s: %s", self.client_ip, exc)
            self._reject(Rejected(400, responses.MSG_BAD_REQUEST))
            return
        # httptools buffers an incomplete header line itself: bound it by the bytes read. When the
        # head began after another message in this read, it is counted from the next read.
        if self.in_head and fresh and completed == self.completed:
            self.head_received += len(data)
            if self.head_received > self.max_head:
                self._reject(Rejected(431, responses.MSG_HEADERS_TOO_LARGE))
                return
        elif fresh and not in_head and self.completed == completed + 1 and self.head_11 and len(data) <= _REPEAT_MAX:
            self._remember(data)
        self._start_pending()

    def _remember(self, data: bytes) -> None:
        """`data` was one whole request, parsed. Its head but for the request line is noted; when
        it repeats the one noted before (two in a row) and is plain, the head is kept (see
        _Repeat): heads that differ every time cost a slice, not a copy of their headers."""
        call = self.head_call
        special = self.special
        if call is None or len(special) != 1:  # Host alone: no body, Connection, Expect or Upgrade
            return
        eol = data.find(b"\r\n")  # head_11: the line ends in " HTTP/1.1"
        if len(data) - eol + 9 != len(self.seen_tail) or not data.endswith(self.seen_tail):
            self.seen_tail = data[eol - 9:]
            return
        url = self.url
        lead = call.method_bytes + b" "
        if data.find(b"\r\n\r\n") == len(data) - 4 and data.startswith(lead) and data[len(lead):eol - 9] == url:
            self.repeat = _Repeat(call.method_bytes, data[eol - 9:], call.headers.copy(), special,
                                  self.head_size - len(url))

    def _replay(self, repeat: _Repeat, target: bytes) -> None:
        """The read is one whole request with `repeat`'s head for `target`: do what llhttp's
        callbacks would have done, without parsing it."""
        self.url = target
        self.headers = repeat.headers.copy()  # a copy: plugins may change the call's list in place
        self.special = repeat.special
        self.head_size = len(target) + repeat.head_size
        self.head_11 = True
        self.line_11 = False
        try:
            self._head_complete(repeat.method)
            self.on_message_complete()
        except Exception as exc:
            self._callback_failed(exc)
            return
        self._start_pending()

    def _start_pending(self) -> None:
        """Start `current` when the read just parsed (or replayed) completed its head."""
        if self.start_pending:
            self.start_pending = False
            self._start(self.current)  # type: ignore[arg-type]

    def _callback_failed(self, cause: BaseException | None) -> None:
        """What a parser callback raised (or the same code for a repeated head): a refusal, or a bug."""
        if isinstance(cause, Rejected):
            log.debug("request from %s refused: %d %s", self.client_ip, cause.status, cause.message)
            self._reject(cause)
        else:
            log.error("request from %s: parser callback failed", self.client_ip, exc_info=cause)
            self._reject(Rejected(500, responses.MSG_UNEXPECTED))

    def _upgrade(self, rest: bytes) -> None:
        """llhttp stopped after a request that asked for an Upgrade (its message is complete)."""
        call = self.upgrading
        self.upgrading = None
        if call is not None and call.upgrade is not None:
            self.tunnel = call  # what follows is the WebSocket's, held until the upstream agrees
            if rest:
                self._tunnel_up(rest)
            return
        # Not a WebSocket (and with no body, see on_headers_complete): the Upgrade is ignored and
        # the connection goes on as HTTP/1.1, so the bytes that follow are parsed as requests.
        self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.data_received(rest)

    # httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.special = {}
        self.head_size = 0              # URL and header lines so far, bytes
        self.in_head = True
        self.head_received = 0
        self.head_11 = self.line_11  # only the first message of a read began at its first byte
        self.line_11 = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size = len(self.url)
        if self.head_size > self.max_url:
            raise Rejected(414, responses.MSG_URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        lname, kind = self.names.lookup(len(headers), name)
        headers.append((lname, value))
        self.head_size += len(name) + len(value) + 4
        if kind == _SPECIAL:
            special = self.special
            if lname not in special:
                special[lname] = value
            elif lname == b"host":
                raise Rejected(400, responses.MSG_BAD_REQUEST)  # RFC 9112 §3.2: exactly one Host
            else:
                special[lname] += b", " + value
        if self.head_size > self.max_head or len(headers) > self.max_headers:
            raise Rejected(431, responses.MSG_HEADERS_TOO_LARGE)
        if not self.head_ascii and not value.isascii():
            raise Rejected(400, responses.MSG_BAD_REQUEST)

    def on_headers_complete(self) -> None:
        self._head_complete(self.parser.get_method())

    def _head_complete(self, method: bytes) -> None:
        self.in_head = False
        if method == b"CONNECT":
            raise Rejected(405, responses.MSG_METHOD_NOT_ALLOWED)
        url = self.url
        path, _, query = url.partition(b"?")
        if not path.startswith(b"/"):
            path = httptools.parse_url(url).path or b"/"
        call = Call(method, path.decode("latin-1"), query.decode("latin-1"), self.headers,
                    self.client_ip, time.time(), self.clock())
        if self.trusted:
            call.forwarded_ip = self.server.real_ip(self.client_ip, self.headers)
        call.request_bytes = len(method) + 12 + self.head_size + 2  # "M U HTTP/1.1\r\n" headers "\r\n"
        if not query and url.endswith(b"?"):
            call.bare_query = True
        special = self.special
        host = call.host = special.get(b"host", b"")
        if host:
            if host == self.valid_host:
                call.host = self.valid_host  # the same object: _start and _send know it by identity
            elif host.translate(None, _HOST_BYTES) or host.find(b"..") >= 0:
                raise Rejected(400, responses.MSG_BAD_REQUEST)  # as nginx: a Host that is not a host[:port]
            else:
                self.valid_host = host
                self.valid_bare = _without_port(host)
                self.valid_name = self.valid_bare.decode("latin-1").lower()
        version = "1.1" if self.head_11 else self.parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise Rejected(505 if version >= "2" else 400,
                               responses.MSG_VERSION if version >= "2" else responses.MSG_BAD_REQUEST)
            call.http_11 = False
        elif not call.host:
            raise Rejected(400, responses.MSG_BAD_REQUEST)  # RFC 9112 §3.2: HTTP/1.1 needs a Host
        if len(special) > (1 if host else 0):  # framing, Connection, Expect or Upgrade to look at
            self._special(call, special)
        elif not call.http_11:
            call.keep_alive = False  # llhttp's answer for HTTP/1.0 without Connection: keep-alive
        if self.current is None:
            self.current = call
            self.start_pending = True
        else:
            # One read can hold thousands of tiny requests: more than this waiting is an attack.
            if len(self.pipeline) >= MAX_PIPELINE:
                raise Rejected(400, responses.MSG_BAD_REQUEST)
            self.pipeline.append(call)
            self._update_reading()
        self.server.requests_total += 1
        self.parsing = call
        self.head_call = call

    def _special(self, call: Call, special: dict[bytes, bytes]) -> None:
        """The request headers besides Host that on_headers_complete acts on (`special`)."""
        parser = self.parser
        if b"connection" in special:
            call.hop_tokens = connection_tokens(special[b"connection"])
            call.keep_alive = parser.should_keep_alive()
        elif not call.http_11:
            call.keep_alive = False  # llhttp's answer for HTTP/1.0 without Connection: keep-alive
        if b"transfer-encoding" in special:
            # Only `chunked` is forwarded (re-framed); any other coding, or chunked in HTTP/1.0
            # (RFC 9112 §6.1), could be framed differently by the upstream.
            if special[b"transfer-encoding"].lower() != b"chunked" or not call.http_11:
                raise Rejected(400, responses.MSG_BAD_REQUEST)
            call.chunked = call.has_body = True
            call.body_limit = call.request_bytes + self.max_body
        elif b"content-length" in special:
            call.content_length = int(special[b"content-length"])  # llhttp checked the digits
            if call.content_length > self.max_body:
                raise Rejected(413, responses.MSG_BODY_TOO_LARGE)
            call.has_body = call.content_length > 0
        if b"expect" in special:
            call.expect_continue = special[b"expect"].lower() == b"100-continue"
        if b"upgrade" in special and parser.should_upgrade():  # llhttp: Upgrade and Connection: upgrade
            if call.has_body:
                raise Rejected(400, responses.MSG_BAD_REQUEST)  # llhttp would hand the body over as tunnel bytes
            upgrade = special.get(b"upgrade", b"")
            if upgrade.lower() == b"websocket":
                call.upgrade = upgrade
                call.keep_alive = False
            self.upgrading = call

    def on_body(self, body: bytes) -> None:
        call = self.parsing
        if call is None:
            return
        call.request_bytes += len(body)
        if call.request_bytes > call.body_limit:  # only chunked bodies have a limit to check here
            raise Rejected(413, responses.MSG_BODY_TOO_LARGE)
        if call.discard_body:
            return
        if call is self.current and call.upstream is not None and call.sent_at:
            self._forward_body(call, body)
        else:
            call.body_queue.append(body)
            call.queued_bytes += len(body)
            if call.queued_bytes > HIGH_WATER:
                self._update_reading()

    def on_message_complete(self) -> None:
        self.completed += 1
        call = self.parsing
        if call is None:
            return
        self.parsing = None
        call.request_done = True
        if call is not self.current:
            return
        if call.response_done:
            self._cycle_done(call)
        elif call.upstream is not None and call.sent_at:
            self._end_body(call)

    # The request cycle -------------------------------------------------------------------------

    def _start(self, call: Call) -> None:
        state: State = self.server.state
        if call.host is self.valid_host:
            hostname = self.valid_name
        else:
            hostname = _without_port(call.host).decode("latin-1").lower()
        headers = dict(call.headers) if state.routes.uses_headers else _NO_HEADERS
        match = state.routes.match(call.method, hostname, call.path, headers)
        if match is None:
            self._gateway_error(call, 404, responses.MSG_NO_ROUTE)
            return
        compiled = match.compiled
        call.match = match
        call.route = compiled.route
        call.service = compiled.service
        plugins = compiled.plugins
        if plugins is None:
            self._gateway_error(call, 404, responses.MSG_NO_ROUTE)
            return
        chain = plugins.base
        call.chain = chain
        if not compiled.http_allowed and not self.tls:
            forwarded = self._forwarded(call) if self.trusted else _NOT_FORWARDED
            if forwarded[0].lower() != b"https":
                # The target as sent (`self.url` may by now hold a later pipelined request's).
                target = f"{call.path}?{call.query}" if call.query or call.bare_query else call.path
                if forwarded[1]:
                    hostname = forwarded[1].decode("latin-1")
                self._reply(call, responses.https_required(compiled.https_redirect, hostname or self._local_host(),
                                                           target))
                return
        if chain.access:
            try:
                reply = run_access(call, plugins)
            except Exception:
                log.exception("plugin access phase failed")
                reply = Reply(500, {"message": responses.MSG_UNEXPECTED})
            if reply is not None:
                self._reply(call, reply)
                return
        if call.expect_continue and not call.request_done:
            call.response_bytes += len(responses.CONTINUE)
            self.transport.write(responses.CONTINUE)
        self._attempt(call)

    def _attempt(self, call: Call) -> None:
        """Send the request on an idle pooled connection, or open one in a task."""
        target: Target = call.match.compiled.target  # type: ignore[union-attr]
        conn = self.server.pool.take(target.key)
        if conn is not None:
            self._send(call, conn)
        else:
            self.loop.create_task(self._connect(call, target))

    async def _connect(self, call: Call, target: Target) -> None:
        key = target.key
        try:
            conn = await self.server.pool.connect(key, target.connect_timeout)
        except ConnectFailed as exc:
            log.info("%s", exc)
            self._upstream_error(call, exc.kind, nothing_sent=True)
            return
        except Exception:
            log.exception("connecting to %s:%d failed", key.host, key.port)
            self._upstream_error(call, "refused", nothing_sent=True)
            return
        if self.lost or call is not self.current:
            self.server.pool.release(conn)
            return
        self._send(call, conn)

    def _send(self, call: Call, conn: UpstreamConnection) -> None:
        """Write the request head (and whatever body arrived) to `conn`."""
        match = call.match
        assert match is not None
        compiled = match.compiled
        service: Target = compiled.target
        call.upstream = conn
        conn.begin(self, call.method == "HEAD", service.read_timeout, service.write_timeout)
        if self.write_paused:
            conn.pause_reading()
        host = call.host if compiled.preserve_host and call.host else service.host_header
        target = match.target
        if call.query:
            target = b"%s?%s" % (target, call.query.encode("latin-1"))
        elif call.bare_query:
            target += b"?"  # as Kong: `/p?` reaches the upstream as sent
        if call.chunked:
            framing = b"transfer-encoding: chunked\r\n"
        elif call.has_body or call.method in ("POST", "PUT", "PATCH"):
            framing = b"content-length: %d\r\n" % call.content_length
        else:
            framing = b""
        # A client sends the same headers on every request, more often than not: their lines are
        # joined once per connection until they change.
        headers = call.headers
        tokens = call.hop_tokens
        if headers == self.sent_headers and (tokens is self.sent_tokens or tokens == self.sent_tokens):
            lines = self.sent_lines
            if headers and not same_items(headers, self.sent_headers):
                self.sent_headers = headers.copy()
        else:
            lines = request_header_lines(headers, call.hop_tokens)
            self.sent_headers = headers.copy()  # a copy: a plugin may still change the call's list in place
            self.sent_tokens = call.hop_tokens
            self.sent_lines = lines
        prefix_line = match.prefix_line
        if self.trusted:
            proto, forwarded_host, port, path, prefix = self._forwarded(call)
            if prefix:
                prefix_line = forwarded_prefix_line(prefix)
        else:
            proto, forwarded_host, port, path, _ = _NOT_FORWARDED
        if not forwarded_host:
            forwarded_host = self.valid_bare if call.host is self.valid_host else _without_port(call.host)
        head = upstream_request_head(
            call.method_bytes, target, host, lines,
            client_ip=self.client_ip_b,
            real_ip=call.forwarded_ip.encode("latin-1") if self.trusted else self.client_ip_b,
            forwarded_proto=proto or self.proto_b, forwarded_host=forwarded_host,
            forwarded_port=port or self.local_port_b,
            forwarded_path=path or call.path.encode("latin-1"), prefix_line=prefix_line,
            framing=framing, upgrade=call.upgrade, blocks=self.own_forwarded)
        call.sent_at = self.clock()
        conn.write(head)
        if call.upgrade is not None:
            return  # bytes after the head belong to the tunnel, sent once the upstream agrees
        if call.replay and call.replay_ok:
            for chunk in call.replay:  # a retry: what the failed attempt already sent
                self._frame_body(call, conn, chunk)
        queued = call.body_queue
        if queued:
            call.body_queue = []
            call.queued_bytes = 0
            for chunk in queued:
                self._forward_body(call, chunk)
            self._update_reading()
        if call.request_done:
            self._end_body(call)

    def _local_host(self) -> str:
        """The name of this end for a request without a Host (HTTP/1.0): the address it reached."""
        sock = self.transport.get_extra_info("sockname")
        local = str(sock[0]) if sock else "localhost"
        return f"[{local}]" if ":" in local else local

    @staticmethod
    def _forwarded(call: Call) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """X-Forwarded-Proto, -Host, -Port, -Path and -Prefix as a trusted client sent them (b"" when absent)."""
        found = dict.fromkeys(_FORWARDED, b"")
        for name, value in call.headers:
            if name in found and not found[name]:
                found[name] = value.strip()
        return found[b"x-forwarded-proto"], found[b"x-forwarded-host"], found[b"x-forwarded-port"], \
            found[b"x-forwarded-path"], found[b"x-forwarded-prefix"]

    def _forward_body(self, call: Call, chunk: bytes) -> None:
        conn = call.upstream
        assert conn is not None
        call.body_forwarded += len(chunk)
        if call.replay_ok:
            if call.body_forwarded > REPLAY_LIMIT:
                call.replay_ok = False
                call.replay = []
            else:
                call.replay.append(chunk)
        self._frame_body(call, conn, chunk)

    @staticmethod
    def _frame_body(call: Call, conn: UpstreamConnection, chunk: bytes) -> None:
        if call.chunked:
            conn.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
        else:
            conn.write(chunk)

    def _end_body(self, call: Call) -> None:
        conn = call.upstream
        if conn is None:
            return
        if call.chunked and not call.discard_body:
            conn.write(b"0\r\n\r\n")
        conn.request_sent()

    # What the upstream connection reports (the Exchange protocol) -----------------------------

    def upstream_head(self, conn: UpstreamConnection, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        call = self.current
        if call is None or call.upstream is not conn:
            return
        call.first_byte_at = self.clock()
        upgrade = status == 101 and call.upgrade is not None
        if status == 101 and not upgrade:
            conn.detach()
            self._upstream_error(call, "invalid", nothing_sent=False)
            return
        headers = raw  # framing and hop-by-hop headers are already out (UpstreamConnection.on_header)
        if conn.hop_tokens:
            headers = [item for item in raw if item[0].lower() not in conn.hop_tokens]
        if upgrade and conn.upgrade_header is not None:
            headers.append(conn.upgrade_header)
        via = conn.via
        call.status = status
        call.response_headers = headers
        chain: Chain | None = call.chain
        if chain is not None and chain.header_filter:
            run_header_filter(call)
        length = conn.content_length
        size = 0  # an int for the formatting below, which mypyc then does inline
        if length is not None:
            size = length
        keep_alive = call.keep_alive and not self.closing and not self.server.draining
        if upgrade:
            mode = _NO_BODY
            framing = b"Connection: upgrade\r\n"
        elif call.method == "HEAD" or status in (204, 304) or status < 200:
            mode = _NO_BODY
            framing = b"Content-Length: %d\r\n" % size if length is not None and call.method == "HEAD" else b""
        elif length is not None and not (chain is not None and chain.body_filter):
            mode = _LENGTH if length else _NO_BODY
            framing = self._length_line(size)
        elif call.http_11:
            mode = _CHUNKED
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            mode = _UNTIL_CLOSE
            keep_alive = False
            framing = b""
        connection = b""
        if not upgrade:
            if not keep_alive:
                connection = b"Connection: close\r\n"
            elif not call.http_11:
                connection = b"Connection: keep-alive\r\n"
        call.keep_alive = keep_alive
        latency = self._latency_lines(int((call.first_byte_at - call.sent_at) * 1000),
                                      int((call.sent_at - call.received_at) * 1000))
        line = responses.STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status
        head = response_head(line, self.response_lines.join(call.response_headers), via, framing, connection,
                             latency)
        self.out_mode = mode
        self.remaining = length or 0
        call.head_sent = True
        call.response_bytes += len(head)
        if upgrade:
            self.transport.write(head)
            self._open_tunnel(call, conn)
            return
        if mode == _NO_BODY:
            run_meter(call)
            self.transport.write(head)
        else:
            self.held = head

    # Formatting an int costs more than comparing it: the last line of each kind is kept.

    def _length_line(self, size: int) -> bytes:
        if size != self.length_size:
            self.length_size = size
            self.length_line = b"Content-Length: %d\r\n" % size
        return self.length_line

    def _latency_lines(self, upstream_ms: int, proxy_ms: int) -> bytes:
        if upstream_ms != self.upstream_ms or proxy_ms != self.proxy_ms:
            self.upstream_ms = upstream_ms
            self.proxy_ms = proxy_ms
            self.latency_lines = b"X-Tollway-Upstream-Latency: %d\r\nX-Tollway-Proxy-Latency: %d\r\n" % (
                upstream_ms, proxy_ms)
        return self.latency_lines

    def upstream_body(self, conn: UpstreamConnection, chunk: bytes) -> None:
        call = self.current
        if call is None or call.upstream is not conn or self.out_mode == _NO_BODY:
            return
        chain: Chain | None = call.chain
        if chain is not None and chain.body_filter:
            chunk = run_body_filter(call, chunk, False)
            if not chunk:
                return
        mode = self.out_mode
        held = self.held
        self.held = None
        if mode == _CHUNKED:
            size = b"%x\r\n" % len(chunk)
            call.response_bytes += len(size) + len(chunk) + 2
            self.transport.writelines([held, size, chunk, b"\r\n"] if held else [size, chunk, b"\r\n"])
            return
        call.response_bytes += len(chunk)
        if mode == _LENGTH:
            self.remaining -= len(chunk)
            if self.remaining <= 0:
                run_meter(call)
        if held:
            self.transport.writelines([held, chunk])
        else:
            self.transport.write(chunk)

    def upstream_fed(self, conn: UpstreamConnection) -> None:
        """The upstream's latest read is parsed: a head still held goes out now."""
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held)

    def upstream_done(self, conn: UpstreamConnection, keep_alive: bool) -> None:
        call = self.current
        if call is None or call.upstream is not conn:
            return
        call.upstream = None
        if conn.tunnel:
            run_meter(call)
            self.transport.close()
            return
        mode = self.out_mode
        if mode == _CHUNKED:
            last = b"0\r\n\r\n"
            chain: Chain | None = call.chain
            if chain is not None and chain.body_filter:
                tail = run_body_filter(call, b"", True)
                if tail:
                    last = b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail)
            call.response_bytes += len(last)
            run_meter(call)
            held = self.held
            self.held = None
            self.transport.write(held + last if held else last)
        else:
            run_meter(call)
            self.upstream_fed(conn)
        self._response_complete(call)

    def upstream_failed(self, conn: UpstreamConnection, kind: str) -> None:
        call = self.current
        if call is None or call.upstream is not conn:
            return
        # A kept-alive connection the upstream closed before answering: the request can be
        # sent again (when its body allows it).
        self._upstream_error(call, kind, nothing_sent=False, stale=kind == "closed" and not conn.got_bytes)

    def upstream_tunnel(self, conn: UpstreamConnection, data: bytes) -> None:
        call = self.current
        if call is not None:
            call.response_bytes += len(data)
        self.transport.write(data)

    def upstream_write_paused(self, paused: bool) -> None:
        self._update_reading()

    # Errors, replies, completion ---------------------------------------------------------------

    def _upstream_error(self, call: Call, kind: str, nothing_sent: bool, stale: bool = False) -> None:
        """The upstream failed: retry when allowed, else answer as Kong, or close if too late."""
        if self.lost or call is not self.current or call.response_done:
            return
        conn = call.upstream
        call.upstream = None
        if conn is not None:
            conn.detach()
        if self.held is not None:  # the head never left: the client can still get a clean error
            call.response_bytes -= len(self.held)
            call.head_sent = False
            self.held = None
        retries = call.match.compiled.target.retries if call.match is not None else 0
        if not call.head_sent and call.upgrade is None and call.tries < retries:
            # Connection failures are retried; a request whose body went out only when idempotent.
            replayable = call.replay_ok and (call.body_forwarded == 0 or call.method in IDEMPOTENT)
            if (nothing_sent and kind in ("refused", "timeout")) or (stale and replayable):
                call.tries += 1
                self._attempt(call)
                return
        if call.head_sent:
            self._cut_off(call)
            return
        status, message = _FAILURES.get(kind, (502, responses.MSG_BAD_GATEWAY))
        self._gateway_error(call, status, message)

    def _cut_off(self, call: Call) -> None:
        """Part of the response is out: the client can only learn of a failure by a close."""
        call.keep_alive = False
        call.response_done = True
        run_meter(call)
        run_log(call)
        self.transport.close()

    def _gateway_error(self, call: Call, status: int, message: str) -> None:
        self._reply(call, Reply(status, {"message": message}))

    def _reply(self, call: Call, reply: Reply) -> None:
        """Answer `call` with a response of the gateway's (or a plugin's) own."""
        keep_alive = call.keep_alive and not self.closing and not self.server.draining
        if not call.request_done:
            if call.expect_continue or call.upgrade is not None:
                keep_alive = False  # the client may or may not send the body now
            else:
                call.discard_body = True
        call.keep_alive = keep_alive
        data, status = responses.render(reply, keep_alive, call.method == "HEAD")
        call.status = status
        call.response_headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in reply.headers.items()]
        call.head_sent = True
        call.response_bytes += len(data)
        run_meter(call)
        self.transport.write(data)
        self._response_complete(call)

    def _reject(self, rejected: Rejected) -> None:
        """Refuse a request: answer in Kong's shape and close; nothing more is read or forwarded.

        When earlier requests of the connection are complete, they are answered first.
        """
        self.server.requests_rejected += 1
        self.rejecting = True
        self.in_head = False
        broken = self.parsing  # a request whose body broke, or grew over the limit
        self.parsing = None
        current = self.current
        if broken is not None and broken is not current:
            self.pipeline.remove(broken)  # a pipelined request that never started
            broken = None
        if current is not None and broken is None:
            self.deferred = rejected
            if not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            self._start_pending()
            return
        self.start_pending = False
        if current is None:
            self._write_rejection(rejected)
            return
        # The request in flight broke: whatever went to its upstream is abandoned.
        current.keep_alive = False
        conn = current.upstream
        current.upstream = None
        if conn is not None:
            conn.detach()
        if current.response_done:
            self.transport.close()
        elif current.head_sent:
            self._cut_off(current)
        else:
            current.request_done = True
            self._reply(current, Reply(rejected.status, {"message": rejected.message}))

    def _write_rejection(self, rejected: Rejected) -> None:
        data, _ = responses.render(Reply(rejected.status, {"message": rejected.message}), False)
        self.transport.write(data)
        self._close()

    def _close(self) -> None:
        """Close; after a refusal, linger (as nginx's lingering_close) so the answer gets through.

        A client may still be sending what was refused: closing a socket with unread bytes resets
        the connection, which can destroy the answer before the client reads it. So the write side
        is shut, what arrives is read and dropped (`rejecting`), and the socket goes after LINGER.
        """
        transport = self.transport
        if not self.rejecting or self.tls or self.lost or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.loop.call_later(LINGER, transport.abort)

    def _response_complete(self, call: Call) -> None:
        call.response_done = True
        chain: Chain | None = call.chain
        if chain is not None and chain.log:
            self.loop.call_soon(run_log, call)
        if call.request_done or not call.keep_alive:
            self._cycle_done(call)
        else:
            call.discard_body = True  # the rest of the body arrives before the next request

    def _cycle_done(self, call: Call) -> None:
        if call is not self.current:
            return
        self.current = None
        if not call.keep_alive or self.closing:
            self._close()
            return
        if self.pipeline:
            following = self.pipeline.popleft()
            self.current = following
            self._update_reading()
            self._start(following)
            return
        if self.deferred is not None:
            self._write_rejection(self.deferred)
            return
        self._update_reading()

    def _update_reading(self) -> None:
        call = self.current
        pause = bool(self.pipeline) or (
            call is not None and (call.queued_bytes > HIGH_WATER
                                  or (call.upstream is not None and call.upstream.write_paused)))
        if pause != self.read_paused and not self.lost and not self.rejecting:
            self.read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # WebSocket tunnel ---------------------------------------------------------------------------

    def _open_tunnel(self, call: Call, conn: UpstreamConnection) -> None:
        self.tunnel = call
        queued = call.body_queue
        call.body_queue = []
        call.queued_bytes = 0
        for chunk in queued:
            conn.write(chunk)
        self._update_reading()

    def _tunnel_up(self, data: bytes) -> None:
        call = self.tunnel
        assert call is not None
        call.request_bytes += len(data)
        conn = call.upstream
        if conn is not None and conn.tunnel:
            conn.write(data)
        else:
            call.body_queue.append(data)
            call.queued_bytes += len(data)
            self._update_reading()

    # Timeouts (called by the server's sweep) ---------------------------------------------------

    def check_timeouts(self, now: float, header_timeout: float, keepalive_timeout: float) -> None:
        """Close the connection when a head, a pause in a request body, or an idle keep-alive
        period lasted too long (the header timeout for the first two, as nginx's client_body_timeout).

        A connection waiting on its upstream, in a tunnel, or whose reading the proxy paused is left
        to the upstream timeouts. The clock of a state starts at the first sweep that sees it, so a
        limit holds within a sweep interval.
        """
        if self.tunnel is not None or self.lost or self.rejecting or self.read_paused:
            self.watched = None
            return
        body = self.parsing
        if body is not None:
            state = (2, body.request_bytes)  # the clock restarts with every byte of the body
            limit = header_timeout
        elif self.current is not None or self.pipeline:
            self.watched = None
            return
        else:
            state = (int(self.in_head), self.completed)
            limit = header_timeout if self.in_head or not self.completed else keepalive_timeout
            if self.closing and not self.in_head:
                limit = min(limit, DRAIN_IDLE_GRACE)
        if state != self.watched:
            self.watched = state
            self.deadline = now + limit
            return
        if now < self.deadline:
            return
        if not self.closing:
            self.server.timeouts += 1
        if body is not None or self.in_head:
            self._reject(Rejected(408, responses.MSG_REQUEST_TIMEOUT))
        else:
            self.transport.close()

    # Draining -----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close once the response in flight is complete; an idle connection after DRAIN_IDLE_GRACE.

        Closing an idle keep-alive connection at once races a request the client is sending on it,
        which would then fail with no response. During the grace a request that arrives is answered
        with `Connection: close`; the sweep closes the connection when the grace passes unused.
        """
        self.closing = True
        self.watched = None  # the sweep restarts the idle clock with the drain's shorter limit

    def abort(self) -> None:
        self.transport.abort()
