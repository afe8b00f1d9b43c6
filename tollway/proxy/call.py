"""`Call`: one request through the proxy, as plugins see it and as the protocol drives it.

A Call is created when a request head has been parsed and lives until its response is complete.
It implements `tollway.plugins.base.Call`; the remaining slots are the request cycle's own state,
kept here so the hot path allocates one object per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from tollway.proxy.headers import NO_TOKENS

if TYPE_CHECKING:
    from tollway.proxy.router import Match
    from tollway.proxy.upstream_connection import UpstreamConnection

__all__ = ["UNLIMITED", "Call", "Identity", "identity_headers"]

UNLIMITED = 1 << 62  # a limit that is never reached

Identity = tuple[tuple[bytes, bytes], ...]  # an identity's headers, as identity_headers() builds them

# The headers `authenticate` sets for the upstream, lower-cased.
_CONSUMER_HEADERS = ((b"x-consumer-id", "id"), (b"x-consumer-username", "username"),
                     (b"x-consumer-custom-id", "custom_id"))
_IDENTITY_HEADERS = frozenset([name for name, _ in _CONSUMER_HEADERS]
                              + [b"x-credential-identifier", b"x-anonymous-consumer"])


def identity_headers(consumer: dict[str, Any] | None, credential: dict[str, Any] | None,
                     anonymous: bool = False) -> Identity:
    """The X-Consumer-*, X-Credential-Identifier and X-Anonymous-Consumer headers for an identity.

    An auth plugin may build them once per consumer and credential and pass them to
    `Call.authenticate`, as key-auth does for the keys it has seen.
    """
    headers = []
    if consumer is not None:
        for name, field in _CONSUMER_HEADERS:
            value = consumer.get(field)
            if value is not None:
                headers.append((name, _header_value(value)))
    if credential is not None and credential.get("id") is not None:
        headers.append((b"x-credential-identifier", _header_value(credential["id"])))
    if anonymous:
        headers.append((b"x-anonymous-consumer", b"true"))
    return tuple(headers)


def _header_value(value: Any) -> bytes:
    """A consumer's field as a header value: UTF-8, with control characters (a CR or LF would
    start a header line of its own) percent-encoded."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return "".join(f"%{ord(ch):02X}" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text).encode()


class Call:
    """One proxied request and its response (see tollway.plugins.base.Call for the public part)."""

    __slots__ = (
        # What plugins see
        "method", "path", "query", "client_ip", "forwarded_ip", "started_at", "route", "service", "consumer",
        "credential", "status", "response_headers", "request_bytes", "response_bytes",
        # Request
        "method_bytes", "headers", "host", "http_11", "keep_alive", "upgrade", "expect_continue", "bare_query",
        "has_body", "chunked", "content_length", "body_limit", "hop_tokens",
        # Routing and plugins
        "match", "chain", "context",
        # Cycle state
        "request_done", "head_sent", "response_done", "metered", "body_queue", "queued_bytes",
        "replay", "replay_ok", "body_forwarded", "upstream", "received_at", "sent_at",
        "first_byte_at", "discard_body", "tries",
    )

    def __init__(self, method: bytes, path: str, query: str, headers: list[tuple[bytes, bytes]],
                 client_ip: str, started_at: float, received_at: float) -> None:
        self.method_bytes = method
        self.method = method.decode("ascii")
        self.path = path
        self.query = query
        self.headers = headers
        self.client_ip = client_ip
        self.forwarded_ip = client_ip  # set by the protocol when a trusted peer names the client
        self.started_at = started_at
        self.received_at = received_at
        self.route: dict[str, Any] = {}
        self.service: dict[str, Any] | None = None
        self.consumer: dict[str, Any] | None = None
        self.credential: dict[str, Any] | None = None
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.request_bytes = 0
        self.response_bytes = 0
        self.host = b""
        self.bare_query = False               # the target ended with a `?` and nothing after it (kept)
        self.http_11 = True
        self.keep_alive = True
        self.upgrade: bytes | None = None
        self.expect_continue = False
        self.has_body = False
        self.chunked = False
        self.content_length = 0
        self.body_limit = UNLIMITED          # request_bytes allowed (head + chunked body)
        self.hop_tokens: frozenset[bytes] = NO_TOKENS
        self.match: Match | None = None
        self.chain: Any = None                # the tollway.proxy.chain.Chain that applies (chain.py imports call.py)
        self.context: dict[str, Any] | None = None  # `ctx`, once a plugin asked for it
        self.request_done = False
        self.head_sent = False
        self.response_done = False
        self.metered = False
        self.body_queue: list[bytes] = []     # body chunks not yet written to the upstream
        self.queued_bytes = 0
        self.replay: list[bytes] = []         # body chunks sent, kept while small for a retry
        self.replay_ok = True
        self.body_forwarded = 0
        self.upstream: UpstreamConnection | None = None
        self.sent_at = 0.0
        self.first_byte_at = 0.0
        self.discard_body = False
        self.tries = 0

    # The plugin interface (documented in tollway.plugins.base.Call) ---------------------------

    @property
    def ctx(self) -> dict[str, Any]:
        """A dict shared by every phase and every plugin of this call, made on first use."""
        context = self.context
        if context is None:
            context = self.context = {}
        return context

    def header(self, name: str) -> str | None:
        """The first request header of that name (case-insensitive), or None."""
        key = name.lower().encode("latin-1")
        for hname, value in self.headers:
            if hname == key:
                return value.decode("latin-1")
        return None

    def set_header(self, name: str, value: str | None) -> None:
        """Set (or with None, remove) a request header sent to the upstream."""
        key = name.lower().encode("latin-1")
        headers = [item for item in self.headers if item[0] != key]
        if value is not None:
            headers.append((key, value.encode("latin-1")))
        self.headers = headers

    def query_arg(self, name: str) -> str | None:
        """The first query argument of that name, decoded, or None."""
        if not self.query:
            return None
        for piece in self.query.split("&"):
            key, _, value = piece.partition("=")
            if unquote_plus(key) == name:
                return unquote_plus(value)
        return None

    def remove_query_arg(self, name: str) -> None:
        """Drop every query argument of that name from what the upstream receives."""
        if self.query:
            self.query = "&".join(piece for piece in self.query.split("&")
                                  if piece and unquote_plus(piece.partition("=")[0]) != name)

    def authenticate(self, consumer: dict[str, Any] | None, credential: dict[str, Any] | None,
                     anonymous: bool = False, identity: Identity | None = None) -> None:
        """Record the consumer and credential; sets the identity headers for the upstream in one pass.

        Whatever the client sent under those names is dropped, so it cannot pose as a consumer.
        `identity` is what identity_headers() gives for the same arguments, when the caller kept it.
        """
        self.consumer = consumer
        self.credential = credential
        # Dropped too: the same names with underscores (X_Consumer_ID), which CGI-style upstreams
        # read as the same variable.
        headers = [item for item in self.headers
                   if not (item[0].startswith(b"x-") or item[0].startswith(b"x_"))
                   or item[0].replace(b"_", b"-") not in _IDENTITY_HEADERS]
        headers += identity_headers(consumer, credential, anonymous) if identity is None else identity
        self.headers = headers
        if self.hop_tokens and not self.hop_tokens.isdisjoint(_IDENTITY_HEADERS):
            # a client's Connection header cannot take them out
            self.hop_tokens = self.hop_tokens - _IDENTITY_HEADERS

    def __repr__(self) -> str:
        return f"<Call {self.method} {self.path} status={self.status}>"
