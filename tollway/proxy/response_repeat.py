"""Response heads that repeat: an upstream answers alike, but for its Date once a second.

llhttp's reading of a head depends only on its bytes and on starting between two messages, so a
read that starts there, holds a head seen before byte for byte and then exactly its Content-Length
of body is the same response with its own body: its callbacks would report what was recorded
then. `ResponseRepeats` (one per upstream connection) keeps such a head once it came twice in a
row, and UpstreamConnection replays it instead of calling llhttp. Only a plain response is kept:
a final status with a body (not 1xx, 204 or 304), framed by Content-Length, that kept the
connection alive, and not the answer to a HEAD request.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["KeptResponse", "ResponseRepeats", "shared_lines"]

# A response head longer than this is never kept for a repeat (the head is kept per connection).
_REPEAT_MAX: Final = 4096

# The header lines of kept heads, one tuple object for equal lines on every connection, bounded
# (Performance notes: tuples typed Any).
_SHARED_LINES: Final[dict[Any, Any]] = {}
_SHARED_MAX: Final = 4096


def shared_lines(headers: list[Any]) -> list[Any]:
    """`headers` with each line replaced by the equal one kept in the shared table (bounded)."""
    if len(_SHARED_LINES) + len(headers) > _SHARED_MAX:
        _SHARED_LINES.clear()  # bounded: a stream of changing values cannot grow it
    return [_SHARED_LINES.setdefault(line, line) for line in headers]


class KeptResponse:
    """A response head as llhttp parsed it, kept to recognise the next response that repeats it."""

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


class ResponseRepeats:
    """One upstream connection's kept head, and what it takes to keep one.

    A head is noted (`seen_head`, a slice of the read) when a whole response came in one read;
    when the next whole response starts with the same bytes, its headers as parsed are the
    `candidate`, and it is kept if the response turns out plain. Heads that differ every time
    cost a slice, not a copy of their headers.
    """

    __slots__ = ("candidate", "kept", "seen_head", "starts_with_seen")

    def __init__(self) -> None:
        self.kept: KeptResponse | None = None
        self.seen_head = b""             # the head of the last whole response read at once
        self.starts_with_seen = False    # the read being parsed starts with it
        self.candidate: list[tuple[bytes, bytes]] | None = None  # then its headers as parsed, before anyone saw them

    def replayable(self, data: bytes) -> KeptResponse | None:
        """The kept head, when `data` (read between two messages, for a request not HEAD) is one
        whole response that repeats it."""
        kept = self.kept
        if kept is not None and len(data) == kept.size and data.startswith(kept.head):
            return kept
        return None

    def note_read(self, data: bytes) -> None:
        """A read between two messages is about to be parsed."""
        self.starts_with_seen = len(self.seen_head) > 0 and data.startswith(self.seen_head)

    def remember(self, data: bytes, status: int, length: int, hop_tokens: frozenset[bytes], via: bytes) -> None:
        """`data` was one whole plain-framed response (Content-Length `length`) and its exchange
        is complete: note its head, or keep it when it repeats the one noted."""
        candidate = self.candidate
        self.candidate = None
        head = data[:len(data) - length]
        if len(head) > _REPEAT_MAX or not head.endswith(b"\r\n\r\n"):
            return
        if candidate is None:  # not seen just before, or not plain (see UpstreamConnection.on_headers_complete)
            self.seen_head = head
            return
        self.kept = KeptResponse(head, status, shared_lines(candidate), length, hop_tokens, via)
