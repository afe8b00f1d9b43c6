"""Reading one client connection's requests: llhttp's callbacks, the checks of each head, and the
`Call` each head becomes, queued on the connection.

httptools calls `on_url`, `on_header`, `on_headers_complete`, `on_body` and
`on_message_complete` as bytes arrive. A request is started only once the bytes of the read that
completed its head were all parsed (`start_pending`), so a request that breaks later in the same
read never reaches an upstream. A read that holds one whole request whose head repeats the last
plain one but for its target is not parsed again (tollway.proxy.request_repeat).

Hostile input: llhttp (strict, no lenient flags) already refuses Content-Length together with
Transfer-Encoding, duplicate or malformed Content-Lengths, bad chunk sizes, obs-fold, bare LF, NUL
and control bytes, and a final coding other than chunked. The checks here add what it lets
through (raising `Rejected`): a Transfer-Encoding other than exactly `chunked`, Transfer-Encoding
in HTTP/1.0, non-ASCII header values, a missing or repeated Host, a Host that is not a host[:port],
CONNECT, HTTP versions other than 1.0 and 1.1, an Upgrade request with a body, more than
MAX_PIPELINE requests waiting behind the one being answered, and the size limits of the settings.
What is refused goes to the connection's `reject` (ClientProtocol.reject).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import httptools

from tollway.proxy import responses
from tollway.proxy.call import Call
from tollway.proxy.connection import HIGH_WATER, ClientConnection
from tollway.proxy.exchange import Exchange
from tollway.proxy.headers import HeaderNames, connection_tokens
from tollway.proxy.request_repeat import REPEAT_MAX, RequestRepeats
from tollway.proxy.responses import Rejected
from tollway.proxy.tunnel import Tunnel

__all__ = ["MAX_PIPELINE", "RequestReader"]

log = logging.getLogger("tollway.proxy")

MAX_PIPELINE: Final = 64         # requests parsed ahead of the one being answered

# Reads up to this size are scanned once for non-ASCII bytes (see feed).
_ASCII_SCAN: Final = 8192

# The request headers the proxy acts on itself, as their HeaderNames kind.
_PROTOCOL_HEADER: Final = 2
_PROTOCOL_NAMES: Final = dict.fromkeys([b"host", b"content-length", b"transfer-encoding", b"expect", b"connection",
                                        b"upgrade"], _PROTOCOL_HEADER)


class RequestReader:
    """Parses the requests of one client connection into Calls."""

    def __init__(self, conn: ClientConnection, exchange: Exchange, tunnel: Tunnel,
                 reject: Callable[[Rejected], None]) -> None:
        self.conn = conn
        self.exchange = exchange
        self.tunnel = tunnel
        self.reject = reject            # what becomes of a refused request (ClientProtocol.reject)
        self.parser = httptools.HttpRequestParser(self)
        (self.max_head, self.max_headers, self.max_url, self.max_body) = conn.server.limits
        self.names = HeaderNames(_PROTOCOL_NAMES)
        self.repeats = RequestRepeats()
        # Checked once per read instead of once per header (Performance notes: per-read checks)
        self.head_ascii = False         # every byte of the head being parsed is ASCII
        self.line_11 = False            # the message that begins this read has an HTTP/1.1 request line
        self.head_11 = False            # ... and that message is the one being parsed
        # Progress, also watched by the connection's timeouts
        self.in_head = False            # a request head has begun and is not complete
        self.head_received = 0          # bytes read while that head was incomplete
        self.completed = 0              # request messages parsed on this connection
        self.parsing: Call | None = None    # the request whose body is being parsed
        self.upgrading: Call | None = None  # the request whose head asked for an Upgrade
        self.start_pending = False      # conn.current starts once the read that completed it is parsed

        # The head being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.protocol_headers: dict[bytes, bytes] = {}  # of _PROTOCOL_NAMES, as sent (repeats joined)
        self.head_size = 0              # URL and header lines so far, bytes
        self.head_call: Call | None = None  # the Call of the last head parsed

    def feed(self, data: bytes) -> None:
        """Parse a read (or replay it, when it repeats the kept head), then start what it completed."""
        fresh = self.parsing is None  # no body in progress: these bytes begin in (or before) a head
        completed = self.completed
        in_head = self.in_head
        if fresh and not in_head:
            target = self.repeats.target_of(data, self.max_url, self.max_head)
            if target is not None:
                self._replay(target)
                return
        # Per-read checks (Performance notes): a head whose bytes are all ASCII needs no check of
        # each value, and a read that begins a message with an HTTP/1.1 request line needs no
        # parser.get_http_version() (a request target has no spaces).
        self.head_ascii = len(data) <= _ASCII_SCAN and data.isascii() and (not in_head or self.head_ascii)
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
            log.debug("bad request from %s: %s", self.conn.client_ip, exc)
            self.reject(Rejected(400, responses.MSG_BAD_REQUEST))
            return
        # httptools buffers an incomplete header line itself: bound it by the bytes read. When the
        # head began after another message in this read, it is counted from the next read.
        if self.in_head and fresh and completed == self.completed:
            self.head_received += len(data)
            if self.head_received > self.max_head:
                self.reject(Rejected(431, responses.MSG_HEADERS_TOO_LARGE))
                return
        elif fresh and not in_head and self.completed == completed + 1 and self.head_11 and len(data) <= REPEAT_MAX:
            self.repeats.remember(data, self.head_call, self.url, self.protocol_headers, self.head_size)
        self.start_pending_call()

    def _replay(self, target: bytes) -> None:
        """The read is one whole request with the kept head for `target`: do what llhttp's
        callbacks would have done, without parsing it."""
        kept = self.repeats.kept
        assert kept is not None
        self.url = target
        self.headers = kept.headers.copy()  # a copy: plugins may change the call's list in place
        self.protocol_headers = kept.protocol_headers
        self.head_size = len(target) + kept.head_size
        self.head_11 = True
        self.line_11 = False
        try:
            self._head_complete(kept.method)
            self.on_message_complete()
        except Exception as exc:
            self._callback_failed(exc)
            return
        self.start_pending_call()

    def start_pending_call(self) -> None:
        """Start the connection's current request when the read just parsed (or replayed)
        completed its head."""
        if self.start_pending:
            self.start_pending = False
            self.exchange.start(self.conn.current)  # type: ignore[arg-type]

    def _callback_failed(self, cause: BaseException | None) -> None:
        """What a parser callback raised (or the same code for a repeated head): a refusal, or a bug."""
        if isinstance(cause, Rejected):
            log.debug("request from %s refused: %d %s", self.conn.client_ip, cause.status, cause.message)
            self.reject(cause)
        else:
            log.error("request from %s: parser callback failed", self.conn.client_ip, exc_info=cause)
            self.reject(Rejected(500, responses.MSG_UNEXPECTED))

    def _upgrade(self, rest: bytes) -> None:
        """llhttp stopped after a request that asked for an Upgrade (its message is complete)."""
        call = self.upgrading
        self.upgrading = None
        if call is not None and call.upgrade is not None:
            self.tunnel.begin(call)  # what follows is the WebSocket's, held until the upstream agrees
            if rest:
                self.tunnel.from_client(rest)
            return
        # Not a WebSocket (and with no body, see on_headers_complete): the Upgrade is ignored and
        # the connection goes on as HTTP/1.1, so the bytes that follow are parsed as requests.
        self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.feed(rest)

    # httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.protocol_headers = {}
        self.head_size = 0
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
        if kind == _PROTOCOL_HEADER:
            protocol_headers = self.protocol_headers
            if lname not in protocol_headers:
                protocol_headers[lname] = value
            elif lname == b"host":
                raise Rejected(400, responses.MSG_BAD_REQUEST)  # RFC 9112 §3.2: exactly one Host
            else:
                protocol_headers[lname] += b", " + value
        if self.head_size > self.max_head or len(headers) > self.max_headers:
            raise Rejected(431, responses.MSG_HEADERS_TOO_LARGE)
        if not self.head_ascii and not value.isascii():
            raise Rejected(400, responses.MSG_BAD_REQUEST)

    def on_headers_complete(self) -> None:
        self._head_complete(self.parser.get_method())

    def _head_complete(self, method: bytes) -> None:
        """The head is complete: check it, make its Call and queue it on the connection."""
        conn = self.conn
        self.in_head = False
        if method == b"CONNECT":
            raise Rejected(405, responses.MSG_METHOD_NOT_ALLOWED)
        url = self.url
        path, _, query = url.partition(b"?")
        if not path.startswith(b"/"):
            path = httptools.parse_url(url).path or b"/"
        call = Call(method, path.decode("latin-1"), query.decode("latin-1"), self.headers,
                    conn.client_ip, time.time(), conn.clock())
        if conn.trusted:
            call.forwarded_ip = conn.server.real_ip(conn.client_ip, self.headers)
        call.request_bytes = len(method) + 12 + self.head_size + 2  # "M U HTTP/1.1\r\n" headers "\r\n"
        if not query and url.endswith(b"?"):
            call.bare_query = True
        protocol_headers = self.protocol_headers
        host = protocol_headers.get(b"host", b"")
        call.host = conn.host.check(host) if host else host
        version = "1.1" if self.head_11 else self.parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise Rejected(505 if version >= "2" else 400,
                               responses.MSG_VERSION if version >= "2" else responses.MSG_BAD_REQUEST)
            call.http_11 = False
        elif not call.host:
            raise Rejected(400, responses.MSG_BAD_REQUEST)  # RFC 9112 §3.2: HTTP/1.1 needs a Host
        if len(protocol_headers) > (1 if host else 0):  # framing, Connection, Expect or Upgrade to look at
            self._act_on(call, protocol_headers)
        elif not call.http_11:
            call.keep_alive = False  # llhttp's answer for HTTP/1.0 without Connection: keep-alive
        if conn.current is None:
            conn.current = call
            self.start_pending = True
        else:
            # One read can hold thousands of tiny requests: more than this waiting is an attack.
            if len(conn.pipeline) >= MAX_PIPELINE:
                raise Rejected(400, responses.MSG_BAD_REQUEST)
            conn.pipeline.append(call)
            conn.update_reading()
        conn.server.requests_total += 1
        self.parsing = call
        self.head_call = call

    def _act_on(self, call: Call, protocol_headers: dict[bytes, bytes]) -> None:
        """The request headers besides Host that the proxy acts on: framing, Connection, Expect, Upgrade."""
        parser = self.parser
        if b"connection" in protocol_headers:
            call.hop_tokens = connection_tokens(protocol_headers[b"connection"])
            call.keep_alive = parser.should_keep_alive()
        elif not call.http_11:
            call.keep_alive = False  # llhttp's answer for HTTP/1.0 without Connection: keep-alive
        if b"transfer-encoding" in protocol_headers:
            # Only `chunked` is forwarded (re-framed); any other coding, or chunked in HTTP/1.0
            # (RFC 9112 §6.1), could be framed differently by the upstream.
            if protocol_headers[b"transfer-encoding"].lower() != b"chunked" or not call.http_11:
                raise Rejected(400, responses.MSG_BAD_REQUEST)
            call.chunked = call.has_body = True
            call.body_limit = call.request_bytes + self.max_body
        elif b"content-length" in protocol_headers:
            call.content_length = int(protocol_headers[b"content-length"])  # llhttp checked the digits
            if call.content_length > self.max_body:
                raise Rejected(413, responses.MSG_BODY_TOO_LARGE)
            call.has_body = call.content_length > 0
        if b"expect" in protocol_headers:
            call.expect_continue = protocol_headers[b"expect"].lower() == b"100-continue"
        if b"upgrade" in protocol_headers and parser.should_upgrade():  # llhttp: Upgrade and Connection: upgrade
            if call.has_body:
                raise Rejected(400, responses.MSG_BAD_REQUEST)  # llhttp would hand the body over as tunnel bytes
            upgrade = protocol_headers.get(b"upgrade", b"")
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
        if call is self.conn.current and call.upstream is not None and call.sent_at:
            self.exchange.forward_body(call, body)
        else:
            call.body_queue.append(body)
            call.queued_bytes += len(body)
            if call.queued_bytes > HIGH_WATER:
                self.conn.update_reading()

    def on_message_complete(self) -> None:
        self.completed += 1
        call = self.parsing
        if call is None:
            return
        self.parsing = None
        call.request_done = True
        if call is not self.conn.current:
            return
        if call.response_done:
            self.exchange.cycle_done(call)
        elif call.upstream is not None and call.sent_at:
            self.exchange.end_body(call)
