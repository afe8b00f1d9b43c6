"""Header rewriting at both boundaries of the proxy: client → upstream and upstream → client.

Request header names are kept lower-cased (the parser callback lowers them once); response header
names are passed on as the upstream wrote them. Hop-by-hop headers (RFC 9110 §7.6.1: Connection
and the names it lists, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) never cross
the proxy: message framing is rebuilt on each side, and Upgrade is only forwarded for WebSocket.
Response headers are sorted once, as they are parsed (UpstreamConnection.on_header), with the
sets defined here.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["VIA", "HOP_BY_HOP", "NAME_OTHER", "NAME_PROXY", "NOT_FORWARDED", "NO_TOKENS", "REQUEST_REWRITTEN",
           "RESPONSE_REWRITTEN", "HeaderNames", "JoinedLines", "RequestLines", "connection_tokens", "forwarded_blocks",
           "forwarded_prefix_line", "forwarded_values", "join_lines", "lower_name", "same_items",
           "request_header_lines", "upstream_request_head", "response_head"]

VIA: Final = b"1.1 tollway"
_VIA_LINE: Final = b"Via: " + VIA + b"\r\n"

NO_TOKENS: Final[frozenset[bytes]] = frozenset()  # no Connection tokens: one shared object, not a new one each time

HOP_BY_HOP: Final = frozenset([
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade",
])

# Request headers the proxy writes itself, so the client's copies are dropped.
REQUEST_REWRITTEN: Final = HOP_BY_HOP | frozenset([
    b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path", b"x-forwarded-prefix",
    b"x-real-ip", b"via",
])

# Response headers the proxy writes itself (an upstream response without any passes through as it is).
RESPONSE_REWRITTEN: Final = HOP_BY_HOP | frozenset([b"content-length", b"via"])


# Header names as sent -> lower-cased, one object per name, bounded (Performance notes: header
# names by position).
_LOWERED: Final[dict[bytes, bytes]] = {}
_LOWERED_MAX: Final = 4096
_POSITIONS: Final = 32  # header positions HeaderNames remembers per connection


def lower_name(name: bytes) -> bytes:
    """`name.lower()`, from the cache when the name was seen before."""
    lowered = _LOWERED.get(name)
    if lowered is None:
        lowered = name.lower()
        if len(_LOWERED) + 2 <= _LOWERED_MAX and len(name) <= 64:  # up to two entries: the name and its lower case
            lowered = _LOWERED.setdefault(lowered, lowered)  # one object for every spelling
            _LOWERED[name] = lowered
    return lowered


# What a header name is to the side that parses it, as HeaderNames.lookup() gives it: a small int
# from that side's table. Tables use values from 2 up.
NAME_OTHER: Final = 0  # not in the table
NAME_PROXY: Final = 1  # not in the table, and a Proxy-* name


class HeaderNames:
    """One connection's header names by position, lower-cased and classified: a client (or an
    upstream) sends the same names in the same order on every message, so most are found by one
    comparison, with no hashing. A name that differs from the one seen at its position goes
    through lower_name() and `table` (lower-cased name -> kind)."""

    __slots__ = ("raw", "lowered", "kinds", "table")

    def __init__(self, table: dict[bytes, int] | None = None) -> None:
        self.raw: list[bytes] = []
        self.lowered: list[bytes] = []
        self.kinds: list[int] = []
        self.table: dict[bytes, int] = table if table is not None else {}

    def lookup(self, index: int, name: bytes) -> tuple[bytes, int]:
        """`name.lower()` and its kind, for the header at position `index` of a message."""
        raw = self.raw
        if index < len(raw):
            if raw[index] == name:
                return self.lowered[index], self.kinds[index]
            lowered = lower_name(name)
            kind = self._kind(lowered)
            raw[index] = name
            self.lowered[index] = lowered
            self.kinds[index] = kind
            return lowered, kind
        lowered = lower_name(name)
        kind = self._kind(lowered)
        if index == len(raw) and index < _POSITIONS:
            raw.append(name)
            self.lowered.append(lowered)
            self.kinds.append(kind)
        return lowered, kind

    def _kind(self, lowered: bytes) -> int:
        kind = self.table.get(lowered, NAME_OTHER)
        if kind == NAME_OTHER and lowered.startswith(b"proxy-"):
            return NAME_PROXY
        return kind


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased names listed in a Connection header value."""
    return frozenset(token.strip().lower() for token in value.split(b",") if token.strip())


def request_header_lines(headers: list[tuple[bytes, bytes]],
                         hop_tokens: frozenset[bytes]) -> tuple[bytes, bytes, bytes]:
    """The client's header lines that go on to the upstream, joined, and the values of its
    X-Forwarded-For and Via headers (b"" when absent), which the proxy extends.

    `headers` are the client's (lower-cased names, after plugins changed them); `hop_tokens` the
    names its Connection header listed, dropped too. The result depends on nothing else, so a
    connection that sends the same headers again can reuse it.
    """
    kept = []
    xff = b""
    via = b""
    dropped = REQUEST_REWRITTEN | hop_tokens if hop_tokens else REQUEST_REWRITTEN
    for item in headers:
        name = item[0]
        if name in dropped or name.startswith(b"proxy-"):
            if name == b"x-forwarded-for":
                xff = item[1] if not xff else xff + b", " + item[1]
            elif name == b"via":
                via = item[1] if not via else via + b", " + item[1]
            continue
        kept.append(item)
    return join_lines(kept), xff, via


class RequestLines:
    """request_header_lines() of the last request's headers, worked out again only when a request's
    headers (or Connection tokens) differ: a client sends the same headers on every request, more
    often than not. One per client connection."""

    __slots__ = ("headers", "lines", "tokens")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.tokens: frozenset[bytes] = NO_TOKENS
        self.lines = (b"", b"", b"")

    def of(self, headers: list[tuple[bytes, bytes]], tokens: frozenset[bytes]) -> tuple[bytes, bytes, bytes]:
        """request_header_lines(headers, tokens)."""
        if headers == self.headers and (tokens is self.tokens or tokens == self.tokens):
            if headers and not same_items(headers, self.headers):
                self.headers = headers.copy()  # see same_items()
            return self.lines
        lines = request_header_lines(headers, tokens)
        self.headers = headers.copy()  # a copy: a plugin may still change the call's list in place
        self.tokens = tokens
        self.lines = lines
        return lines


# What a trusted client (settings.trusted_ips) may say of the request it passes on.
_FORWARDED: Final = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-path",
                     b"x-forwarded-prefix")
NOT_FORWARDED: Final = (b"", b"", b"", b"", b"")


def forwarded_values(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """X-Forwarded-Proto, -Host, -Port, -Path and -Prefix as a trusted client sent them (b"" when absent)."""
    found = dict.fromkeys(_FORWARDED, b"")
    for name, value in headers:
        if name in found and not found[name]:
            found[name] = value.strip()
    return found[b"x-forwarded-proto"], found[b"x-forwarded-host"], found[b"x-forwarded-port"], \
        found[b"x-forwarded-path"], found[b"x-forwarded-prefix"]


def join_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """`name: value` CRLF for each header, as one bytes object."""
    parts = []
    for name, value in headers:
        parts.append(name)  # four appends (Performance notes: one formatting)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    return b"".join(parts)


def upstream_request_head(
    method: bytes,
    target: bytes,
    host: bytes,
    lines: tuple[bytes, bytes, bytes],
    *,
    client_ip: bytes,
    real_ip: bytes,
    forwarded_proto: bytes,
    forwarded_host: bytes,
    forwarded_port: bytes,
    forwarded_path: bytes,
    prefix_line: bytes,
    framing: bytes,
    upgrade: bytes | None,
    blocks: tuple[bytes, bytes, bytes] | None = None,
) -> bytes:
    """The request head sent to the upstream, as one bytes object.

    `lines` is what request_header_lines() gives for the client's headers. `prefix_line` is a
    ready X-Forwarded-Prefix line or b"", `framing` a ready `Content-Length: N` or
    `Transfer-Encoding: chunked` line or b"". `client_ip` is the peer, appended to a client's
    X-Forwarded-For; `real_ip` the client (the peer, unless a trusted peer named another), sent as
    X-Real-IP and as X-Forwarded-For when the client sent none, as Kong. `blocks`, from
    forwarded_blocks() for this `real_ip`, `forwarded_proto` and `forwarded_port`, holds the lines
    that only change with those (a connection's own), so they are not put together per request.
    """
    section, xff, via = lines
    if blocks is None or xff or via:
        blocks = _forwarded_lines(xff + b", " + client_ip if xff else real_ip, forwarded_proto, forwarded_port,
                                  real_ip, via + b", " + VIA if via else VIA)
    ending = b"connection: upgrade\r\nupgrade: " + upgrade + b"\r\n\r\n" if upgrade is not None else b"\r\n"
    # Performance notes: one formatting.
    return b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%s%s%s%s%s%s%s%s" % (
        method, target, host, section, blocks[0], forwarded_host, blocks[1], forwarded_path, blocks[2],
        prefix_line, framing, ending)


def forwarded_prefix_line(prefix: bytes) -> bytes:
    """The X-Forwarded-Prefix line of upstream_request_head() for `prefix` (not empty)."""
    return b"x-forwarded-prefix: %s\r\n" % prefix


def forwarded_blocks(real_ip: bytes, forwarded_proto: bytes, forwarded_port: bytes) -> tuple[bytes, bytes, bytes]:
    """The X-Forwarded-*, X-Real-IP and Via lines of upstream_request_head() that do not depend on
    the request, for a client that sent no X-Forwarded-For or Via of its own."""
    return _forwarded_lines(real_ip, forwarded_proto, forwarded_port, real_ip, VIA)


def _forwarded_lines(forwarded_for: bytes, forwarded_proto: bytes, forwarded_port: bytes, real_ip: bytes,
                     via: bytes) -> tuple[bytes, bytes, bytes]:
    """Those lines in three pieces: before X-Forwarded-Host's value, before X-Forwarded-Path's, after it."""
    return (b"x-forwarded-for: " + forwarded_for + b"\r\nx-forwarded-proto: " + forwarded_proto
            + b"\r\nx-forwarded-host: ",
            b"\r\nx-forwarded-port: " + forwarded_port + b"\r\nx-forwarded-path: ",
            b"\r\nx-real-ip: " + real_ip + b"\r\nvia: " + via + b"\r\n")


class JoinedLines:
    """Header lines joined (`name: value` CRLF each), and joined again only when a message's
    headers differ from the last ones: a client, or an upstream, sends the same headers over and
    over (an upstream's Date changes once a second). One per connection."""

    __slots__ = ("headers", "joined", "names", "other_names", "disjoint")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.joined = b""
        self.names: frozenset[bytes] | None = None  # lower-cased, of `headers`: made on first ask
        # the last names has_none_of() was asked about (a plugin's, one object), and its answer
        self.other_names: frozenset[bytes] | None = None
        self.disjoint = False

    def join(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The lines of `headers`."""
        if headers == self.headers:
            if headers and not same_items(headers, self.headers):
                self.headers = headers.copy()  # see same_items()
            return self.joined
        joined = join_lines(headers)
        self.headers = headers.copy()  # a copy: a plugin may still change the call's list in place
        self.joined = joined
        self.names = None
        self.other_names = None
        return joined

    def has_none_of(self, names: frozenset[bytes]) -> bool:
        """Whether the headers last joined have none of `names` (lower-cased), kept for the same
        `names` object: a method call on a frozenset is a generic one."""
        if names is not self.other_names:
            self.other_names = names
            self.disjoint = self.lowered_names().isdisjoint(names)
        return self.disjoint

    def lowered_names(self) -> frozenset[bytes]:
        """The lower-cased names of the headers last joined (kept with them)."""
        names = self.names
        if names is None:
            names = self.names = frozenset([lower_name(item[0]) for item in self.headers])
        return names


def same_items(headers: list[Any], other: list[Any]) -> bool:
    """Whether two equal, non-empty header lists hold the same tuples (their first one is taken for all).

    A connection that keeps the last list it saw adopts an equal one with other tuples (a kept
    head's), so that the next comparisons are identity checks (Performance notes: tuples typed Any).
    """
    return headers[0] is other[0]


def response_head(status_line: bytes, lines: bytes, via: bytes, framing: bytes, connection: bytes,
                  latency: bytes, added: bytes = b"") -> bytes:
    """The response head sent to the client: status line, the upstream's header `lines` (joined),
    the `added` lines plugins set after them, Via (the upstream's `via` value, if any, and this
    proxy), then the proxy's own ready lines."""
    via_line = b"Via: " + via + b", " + VIA + b"\r\n" if via else _VIA_LINE
    return b"%s%s%s%s%s%s%s\r\n" % (status_line, lines, added, via_line, framing, connection, latency)
