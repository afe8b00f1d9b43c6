"""Request heads that repeat: a client sends the same headers on request after request, and only
its target changes.

llhttp's reading of a header section depends only on its bytes, the method and the version, so a
read that starts between two messages and is `lead`, a target of plain path and query characters,
then `tail`, is the same request for another target. `RequestRepeats` (one per client connection)
keeps such a head once it came twice in a row, and the RequestReader replays it for the new target
instead of calling llhttp. Only a plain request is kept: HTTP/1.1, no body, and no header the
proxy acts on but Host.
"""

from __future__ import annotations

from typing import Final

from tollway.proxy.call import Call

__all__ = ["REPEAT_MAX", "KeptRequest", "RequestRepeats"]

REPEAT_MAX: Final = 4096  # bytes of a request head kept for a repeat (one per connection)

# What a target may hold to be taken without llhttp: RFC 3986's path and query characters, as a
# translate() table that leaves those bytes as they are and changes every other one
# (Performance notes: translate tables).
_TARGET_BYTES: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%"
_PLAIN_TARGET: Final = bytes(byte if byte in _TARGET_BYTES else (byte + 1) % 256 for byte in range(256))


class KeptRequest:
    """A request head as llhttp parsed it, kept to recognise the next request that repeats it."""

    __slots__ = ("head_size", "headers", "lead", "method", "protocol_headers", "tail")

    def __init__(self, method: bytes, tail: bytes, headers: list[tuple[bytes, bytes]],
                 protocol_headers: dict[bytes, bytes], head_size: int) -> None:
        self.method = method
        self.lead = method + b" "   # what the read starts with
        self.tail = tail            # and ends with: " HTTP/1.1" CRLF, the header lines, CRLF
        self.headers = headers      # never handed out: each request gets a copy
        self.protocol_headers = protocol_headers  # only read once parsed (RequestReader.protocol_headers)
        self.head_size = head_size  # of the header lines (on_header's count), the target not included


class RequestRepeats:
    """One client connection's kept head, and what it takes to keep one.

    The head of a whole request read at once, but its request line, is noted (`seen_tail`, a
    slice of the read); when the next one has the same, and is plain, it is kept. Heads that
    differ every time cost a slice, not a copy of their headers.
    """

    __slots__ = ("kept", "seen_tail")

    def __init__(self) -> None:
        self.kept: KeptRequest | None = None
        self.seen_tail = b""            # the last whole request read at once, from " HTTP/1.1" on

    def target_of(self, data: bytes, max_url: int, max_head: int) -> bytes | None:
        """The target of `data`, a read that starts between two messages, when it is one whole
        request that repeats the kept head for a plain target within the limits; else None."""
        kept = self.kept
        if kept is None or not data.endswith(kept.tail) or not data.startswith(kept.lead):
            return None
        target = data[len(kept.lead):len(data) - len(kept.tail)]
        if (target.startswith(b"/") and target.translate(_PLAIN_TARGET) == target
                and len(target) <= max_url and len(target) + kept.head_size <= max_head):
            return target
        return None

    def remember(self, data: bytes, call: Call | None, url: bytes, protocol_headers: dict[bytes, bytes],
                 head_size: int) -> None:
        """`data` was one whole HTTP/1.1 request (`call`, parsed with these `url`,
        `protocol_headers` and `head_size`): note its head, or keep it when it repeats the one noted."""
        if call is None or len(protocol_headers) != 1:  # Host alone: no body, Connection, Expect or Upgrade
            return
        eol = data.find(b"\r\n")  # the line ends in " HTTP/1.1"
        if len(data) - eol + 9 != len(self.seen_tail) or not data.endswith(self.seen_tail):
            self.seen_tail = data[eol - 9:]
            return
        lead = call.method_bytes + b" "
        if data.find(b"\r\n\r\n") == len(data) - 4 and data.startswith(lead) and data[len(lead):eol - 9] == url:
            self.kept = KeptRequest(call.method_bytes, data[eol - 9:], call.headers.copy(), protocol_headers,
                                    head_size - len(url))
