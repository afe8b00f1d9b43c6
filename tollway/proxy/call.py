"""`Call`: one request through the proxy, as plugins see it and as the protocol drives it.

A Call is created when a request head has been parsed and lives until its response is complete.
It implements `tollway.plugins.base.Call` (the plugin development kit: what a plugin reads and
changes of a request and its response); the remaining slots are the request cycle's own state,
kept here so the hot path allocates one object per request (Performance notes: compiled hot path).
What a plugin changes is held here and applied where the request head or the response head is
built: nothing that outlives the call (a route's cached match, a connection's kept heads) changes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus, unquote_plus

from tollway.proxy.headers import NO_TOKENS, REQUEST_REWRITTEN, RESPONSE_REWRITTEN

if TYPE_CHECKING:
    from tollway.proxy.router import Match
    from tollway.proxy.upstream_connection import UpstreamConnection

__all__ = ["UNLIMITED", "Call", "Changes", "HeaderBlock", "HeaderChange", "Identity", "appended_headers",
           "apply_header_changes", "identity_headers"]

UNLIMITED = 1 << 62  # a limit that is never reached

Identity = tuple[tuple[bytes, bytes], ...]  # an identity's headers, as identity_headers() builds them

# The headers `authenticate` sets for the upstream, lower-cased.
_CONSUMER_HEADERS = ((b"x-consumer-id", "id"), (b"x-consumer-username", "username"),
                     (b"x-consumer-custom-id", "custom_id"))
_IDENTITY_HEADERS = frozenset([name for name, _ in _CONSUMER_HEADERS]
                              + [b"x-credential-identifier", b"x-anonymous-consumer"])

# What a plugin may set (RFC 9110 tokens; values without control characters but tab; targets of
# printable ASCII, where llhttp or the upstream would read a space, a '#' or a control byte otherwise).
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_VALUE: Final = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*\Z")
_PATH: Final = re.compile(r"/[!-~]*\Z")
_QUERY: Final = re.compile(r"[!-~]*\Z")
_METHOD: Final = re.compile(r"[A-Z][A-Z0-9_-]*\Z")

# A change of a response header: (name as written, value or None to remove, replace those of the name).
HeaderChange = tuple[bytes, bytes | None, bool]


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


class HeaderBlock:
    """Response headers a plugin of the proxy's own sets together in access, each replacing those
    of its name, ready to be written: rate-limiting's seven a call. `lines` are their header lines
    joined (`Name: value\r\n` each, distinct names), `names` their names lower-cased. Set by
    `Call.set_response_block`; the response head appends `lines` after the upstream's, which stay
    kept, when the upstream's have none of `names` (Performance notes: added lines). The headers as
    (name, value) pairs are read back from the lines only when asked for (`items()`): most calls
    write the lines and never look at the pairs."""

    __slots__ = ("lines", "names")

    def __init__(self, lines: bytes, names: frozenset[bytes]) -> None:
        self.lines = lines
        self.names = names

    def items(self) -> list[tuple[bytes, bytes]]:
        """The headers as (name, value), in the order of the lines."""
        items: list[tuple[bytes, bytes]] = []
        for line in self.lines.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b": ")
                items.append((name, value))
        return items

    def changes(self) -> list[HeaderChange]:
        """The same as set_response_header() changes, one a header."""
        return [(name, value, True) for name, value in self.items()]


class Changes:
    """What plugins changed of a call besides its request headers and query, made on the first
    change (a call no plugin changes allocates none): applied where the heads are built."""

    __slots__ = ("method", "path", "response_block", "response_headers")

    def __init__(self) -> None:
        self.path: bytes | None = None      # set_path()'s, instead of the route's
        self.method: str | None = None      # set_method()'s, instead of the client's
        self.response_headers: list[HeaderChange] = []  # made before the response (in access)
        # set_response_block()'s, while it is the only change of the response's headers (else
        # it is among response_headers, in its place)
        self.response_block: HeaderBlock | None = None

    def header_changes(self) -> list[HeaderChange]:
        """Every change of the response's headers, in order (a block's among them)."""
        block = self.response_block
        if block is not None:
            self.response_block = None
            self.response_headers.extend(block.changes())
        return self.response_headers


def apply_header_changes(headers: list[tuple[bytes, bytes]], changes: list[HeaderChange]) -> None:
    """Apply response header changes to `headers`, in place, in order (names compared case-insensitively).

    A run of replacing changes (rate-limiting sets seven headers a call) filters the headers once
    for all its names, and keeps, for a name set twice in the run, the last change, where it came:
    the same headers as applying the changes one by one (tests/proxy/test_header_changes.py)."""
    at = 0
    count = len(changes)
    while at < count:
        name, value, replace = changes[at]
        if not replace:
            if value is not None:
                headers.append((name, value))
            at += 1
            continue
        run: dict[bytes, HeaderChange] = {}
        while at < count and changes[at][2]:
            change = changes[at]
            lowered = _lowered(change[0])
            run.pop(lowered, None)  # a later change of a name comes after the names set in between
            run[lowered] = change
            at += 1
        headers[:] = [item for item in headers if _lowered(item[0]) not in run]
        for name, value, _ in run.values():
            if value is not None:
                headers.append((name, value))


def appended_headers(names: frozenset[bytes], changes: list[HeaderChange]) -> list[tuple[bytes, bytes]] | None:
    """What apply_header_changes() adds to headers whose lower-cased names are `names`, when it
    only appends: every change sets a value, replacing, of a name neither those headers nor another
    change has (rate-limiting's seven headers a call). None when it would do more (Performance
    notes: added lines)."""
    added: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for name, value, replace in changes:
        lowered = _lowered(name)
        if value is None or not replace or lowered in names or lowered in seen:
            return None
        seen.add(lowered)
        added.append((name, value))
    return added


# Header names lower-cased, by name: a compiled bytes.lower() is a generic method call and
# allocates, while the names that come by (an upstream's, a plugin's) are few and repeat.
_LOWERED: dict[bytes, bytes] = {}
LOWERED_CACHE_SIZE: Final = 4096


def _lowered(name: bytes) -> bytes:
    found = _LOWERED.get(name)
    if found is None:
        if len(_LOWERED) >= LOWERED_CACHE_SIZE:
            _LOWERED.clear()
        found = _LOWERED[name] = name.lower()
    return found


def _checked_name(name: str, what: str) -> bytes:
    if not _TOKEN.match(name):
        raise ValueError(f"{what} name {name!r} is not a valid header name")
    return name.encode("ascii")


def _checked_value(name: str, value: str) -> bytes:
    if not isinstance(value, str) or not _VALUE.match(value):
        raise ValueError(f"the value of header {name!r} must be a string without control characters")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"the value of header {name!r} must be Latin-1 text") from None


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
        "credential", "status", "headers_out", "added_block", "request_bytes", "response_bytes",
        # Request
        "method_bytes", "headers", "host", "http_11", "keep_alive", "upgrade", "expect_continue", "bare_query",
        "has_body", "chunked", "content_length", "body_limit", "hop_tokens",
        # Routing and plugins
        "match", "chain", "context", "changes",
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
        self.headers_out: list[tuple[bytes, bytes]] = []  # response_headers, but for added_block's
        self.added_block: HeaderBlock | None = None       # a block whose lines the head took as they are
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
        self.changes: Changes | None = None         # of the upstream's path and method, and response headers
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

    @property
    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """The response's headers (name, value): the upstream's, or the gateway's own reply's,
        with the plugins' changes; a HeaderBlock the head appended as lines is read back on first use."""
        block = self.added_block
        if block is not None:
            self.added_block = None
            self.headers_out.extend(block.items())
        return self.headers_out

    @response_headers.setter
    def response_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers_out = headers
        self.added_block = None

    def header(self, name: str) -> str | None:
        """The first request header of that name (case-insensitive), or None."""
        key = name.lower().encode("latin-1")
        for hname, value in self.headers:
            if hname == key:
                return value.decode("latin-1")
        return None

    def set_header(self, name: str, value: str | None) -> None:
        """Set (or with None, remove) a request header sent to the upstream."""
        if value is None:
            self.clear_header(name)
            return
        key = self._settable(name)
        line = (key, _checked_value(name, value))
        headers = [item for item in self.headers if item[0] != key]
        headers.append(line)
        self.headers = headers

    def add_header(self, name: str, value: str) -> None:
        """Add a request header sent to the upstream, after those of the same name."""
        key = self._settable(name)
        line = (key, _checked_value(name, value))
        self.headers.append(line)

    def clear_header(self, name: str) -> None:
        """Remove every request header of that name from what the upstream receives."""
        key = name.lower().encode("latin-1")
        self.headers = [item for item in self.headers if item[0] != key]

    def _settable(self, name: str) -> bytes:
        """The lower-cased name of a request header a plugin sets; raises ValueError for a name
        the proxy writes itself (Host, framing, hop-by-hop, X-Forwarded-*, X-Real-IP, Via)."""
        key = _checked_name(name, "request header").lower()
        if key in REQUEST_REWRITTEN or key.startswith(b"proxy-"):
            raise ValueError(f"request header {name!r} is written by the proxy; a plugin cannot set it")
        if self.hop_tokens and key in self.hop_tokens:
            self.hop_tokens = self.hop_tokens - {key}  # the client's Connection header no longer drops it
        return key

    def set_path(self, path: str) -> None:
        """The path the upstream receives, instead of the one the route made (after strip_path and
        the service's path): sent as given, so percent-encode what needs it. Raises ValueError
        unless it starts with '/' and holds only printable ASCII but '?' and '#'."""
        if not isinstance(path, str) or not _PATH.match(path) or "?" in path or "#" in path:
            raise ValueError(f"path {path!r} must start with '/' and hold only printable ASCII but '?' and '#'")
        self._changes().path = path.encode("ascii")

    def set_query(self, query: str) -> None:
        """The raw query string the upstream receives, without '?' ("" for none). Raises
        ValueError unless it holds only printable ASCII but '#'."""
        if not isinstance(query, str) or not _QUERY.match(query) or "#" in query:
            raise ValueError(f"query {query!r} must hold only printable ASCII but '#'")
        self.query = query
        self.bare_query = False

    def query_arg(self, name: str) -> str | None:
        """The first query argument of that name, decoded, or None."""
        if not self.query:
            return None
        for piece in self.query.split("&"):
            key, _, value = piece.partition("=")
            if unquote_plus(key) == name:
                return unquote_plus(value)
        return None

    def set_query_arg(self, name: str, value: str) -> None:
        """Give the query argument `name` the one value `value` (both encoded here), where the
        first of that name was, or at the end."""
        argument = quote_plus(name, safe="") + "=" + quote_plus(value, safe="")
        pieces = []
        for piece in self.query.split("&") if self.query else ():
            if not piece:
                continue
            if unquote_plus(piece.partition("=")[0]) == name:
                if argument:
                    pieces.append(argument)
                    argument = ""
                continue
            pieces.append(piece)
        if argument:
            pieces.append(argument)
        self.query = "&".join(pieces)
        self.bare_query = False

    def remove_query_arg(self, name: str) -> None:
        """Drop every query argument of that name from what the upstream receives."""
        if self.query:
            self.query = "&".join(piece for piece in self.query.split("&")
                                  if piece and unquote_plus(piece.partition("=")[0]) != name)

    def set_method(self, method: str) -> None:
        """The method the upstream receives; `method` stays the client's, which the response is
        framed for. Raises ValueError for a method that is not an upper-case token, for CONNECT,
        and for a change to or from HEAD (whose response has no body)."""
        if not isinstance(method, str) or not _METHOD.match(method) or method == "CONNECT":
            raise ValueError(f"method {method!r} must be an upper-case token other than CONNECT")
        if (method == "HEAD") != (self.method == "HEAD"):
            raise ValueError(f"a {self.method} request cannot be sent as {method}: HEAD frames the response otherwise")
        self._changes().method = None if method == self.method else method

    def _changes(self) -> Changes:
        changes = self.changes
        if changes is None:
            changes = self.changes = Changes()
        return changes

    def set_response_header(self, name: str, value: str) -> None:
        """Set a header of the response, replacing those of that name. In access, for whichever
        response is sent (the upstream's, or a Reply); in header_filter, of the upstream's."""
        self._change_response_header(name, value, True)

    def add_response_header(self, name: str, value: str) -> None:
        """Add a header to the response, after those of that name (see set_response_header)."""
        self._change_response_header(name, value, False)

    def clear_response_header(self, name: str) -> None:
        """Remove the response headers of that name (see set_response_header)."""
        self._change_response_header(name, None, True)

    def _change_response_header(self, name: str, value: str | None, replace: bool) -> None:
        if self.head_sent:
            raise RuntimeError(f"response header {name!r} cannot change: the response head was already sent")
        key = _checked_name(name, "response header")
        if key.lower() in RESPONSE_REWRITTEN:
            raise ValueError(f"response header {name!r} is written by the proxy; a plugin cannot set it")
        change = (key, None if value is None else _checked_value(name, value), replace)
        if self.status == 0:  # no response yet (access): kept for the one that will be sent
            self._changes().header_changes().append(change)
        else:  # the upstream's head is known (header_filter)
            apply_header_changes(self.response_headers, [change])

    def set_response_block(self, block: HeaderBlock) -> None:
        """Set the headers of `block` in access, as set_response_header() would one by one (its
        names and values are the plugin's to check)."""
        if self.head_sent or self.status != 0:
            raise RuntimeError("a block of response headers is set in access, before the response")
        changes = self._changes()
        if changes.response_headers or changes.response_block is not None:
            changes.header_changes().extend(block.changes())
        else:
            changes.response_block = block

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
