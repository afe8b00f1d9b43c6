"""One metered call as one spool line: the codec between the proxy's hot path and the flusher.

A line is tab-separated UTF-8 ending in a newline:

    1  ts_ms  consumer_id  consumer_username  consumer_custom_id  service_id  service_name
       route_id  route_name  status  request_bytes  response_bytes  latency_us

The leading `1` is the format version. Text fields escape backslash, tab, newline and carriage
return (`\\\\`, `\\t`, `\\n`, `\\r`), so a name can never split a record; an absent value is an
empty field (ids decode to '', names to None).

The layout constants below say where a line's fields are for a reader that takes a line apart
without splitting it (the flusher's runs, tollway/metering/aggregate.py): a time of TIME_DIGITS
digits (every millisecond time from 2001 to 2286) puts the consumer, service and route fields
(the line's middle) at MIDDLE_START.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    # The proxy's own class, not the plugins' protocol: compiled, its fields are read directly.
    from tollway.proxy.call import Call

FORMAT_VERSION: Final = "1"
FIELD_COUNT: Final = 13

VERSION_BYTE: Final = 49                   # b"1"[0]: a line starts with its format version,
TAB: Final = 9                             # ... and b"\t"[0]
TIME_START: Final = 2                      # the time, epoch milliseconds, follows "1\t"
TIME_DIGITS: Final = 13
TIME_END: Final = TIME_START + TIME_DIGITS  # the tab after a time of TIME_DIGITS digits
MIDDLE_START: Final = TIME_END + 1         # the consumer, service and route fields then begin here

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class UsageRecord(NamedTuple):
    """One metered call, as the flusher sees it."""

    ts_ms: int                    # when the request head arrived, epoch milliseconds
    consumer_id: str              # '' when the call had no consumer
    consumer_username: str | None
    consumer_custom_id: str | None
    service_id: str               # '' when the route has no service
    service_name: str | None
    route_id: str
    route_name: str | None
    status: int
    request_bytes: int
    response_bytes: int
    latency_us: int


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def encode_call(call: Any, now: float) -> bytes:
    """The spool line of a finished call (see tollway.plugins.base.Call); `now` ends its latency."""
    consumer = call.consumer
    service = call.service
    route = call.route
    started = call.started_at
    latency_us = int((now - started) * 1_000_000)
    return (
        f"1\t{int(started * 1000)}\t"
        + (f"{_text(consumer.get('id'))}\t{_text(consumer.get('username'))}\t"
           f"{_text(consumer.get('custom_id'))}\t" if consumer else "\t\t\t")
        + (f"{_text(service.get('id'))}\t{_text(service.get('name'))}\t" if service else "\t\t")
        + (f"{_text(route.get('id'))}\t{_text(route.get('name'))}\t" if route else "\t\t")
        + f"{int(call.status)}\t{int(call.request_bytes)}\t{int(call.response_bytes)}\t"
          f"{latency_us if latency_us > 0 else 0}\n"
    ).encode()


class LineEncoder:
    """encode_call with the (consumer, service, route) part of the line cached.

    Those three entities are the same dicts for every call on a route by a consumer until the
    configuration changes, so their escaped text is built once. The cache is keyed by the dicts'
    identities and holds them, so an id cannot be reused while its entry lives; it is cleared when
    it grows past MAX_ENTRIES (a configuration change leaves old entries behind). The last entry
    used is also kept apart: consecutive calls by the same consumer on the same route, the common
    case, find it with three identity checks instead of a lookup.

    Formatting an int costs more than comparing it: the millisecond, and the status and byte
    counts (the same for call after call of one client), are kept as text while they repeat.
    """

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._prefixes: dict[tuple[int, int, int], tuple[bytes, Any, Any, Any]] = {}
        self._last: tuple[bytes, Any, Any, Any] = (b"", None, None, None)
        self._ms = -1
        self._ms_text = b""
        self._status = -1
        self._request_bytes = -1
        self._response_bytes = -1
        self._counts_text = b""

    def encode(self, call: Call, now: float) -> bytes:
        consumer, service, route = call.consumer, call.service, call.route
        last = self._last
        if consumer is last[1] and service is last[2] and route is last[3] and last[0]:
            prefix = last[0]
        else:
            key = (id(consumer), id(service), id(route))
            cached = self._prefixes.get(key)
            if cached is None:
                if len(self._prefixes) >= self.MAX_ENTRIES:
                    self._prefixes.clear()
                cached = (_entities(consumer, service, route), consumer, service, route)
                self._prefixes[key] = cached
            self._last = cached
            prefix = cached[0]
        started = call.started_at
        ms = int(started * 1000)
        if ms != self._ms:
            self._ms = ms
            self._ms_text = b"%d" % ms
        status, request_bytes, response_bytes = call.status, call.request_bytes, call.response_bytes
        if status != self._status or request_bytes != self._request_bytes or response_bytes != self._response_bytes:
            self._status = status
            self._request_bytes = request_bytes
            self._response_bytes = response_bytes
            self._counts_text = b"%d\t%d\t%d\t" % (status, request_bytes, response_bytes)
        latency_us = int((now - started) * 1_000_000)
        return b"1\t%s\t%s%s%d\n" % (self._ms_text, prefix, self._counts_text,
                                      latency_us if latency_us > 0 else 0)  # a typed int: formatted inline


def _entities(consumer: Any, service: Any, route: Any) -> bytes:
    return (
        (f"{_text(consumer.get('id'))}\t{_text(consumer.get('username'))}\t"
         f"{_text(consumer.get('custom_id'))}\t" if consumer else "\t\t\t")
        + (f"{_text(service.get('id'))}\t{_text(service.get('name'))}\t" if service else "\t\t")
        + (f"{_text(route.get('id'))}\t{_text(route.get('name'))}\t" if route else "\t\t")
    ).encode()


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    return _ESCAPED.sub(lambda match: _UNESCAPES.get(match.group(1), match.group(1)), field)


def _name(field: str) -> str | None:
    return _unescape(field) if field else None


def decode_line(line: bytes) -> UsageRecord:
    """Parse one spool line (with or without its newline); ValueError when it is not one."""
    parts = line.rstrip(b"\n").decode("utf-8").split("\t")
    if len(parts) != FIELD_COUNT or parts[0] != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} usage record: {line[:200]!r}")
    return UsageRecord(
        int(parts[1]),
        _unescape(parts[2]), _name(parts[3]), _name(parts[4]),
        _unescape(parts[5]), _name(parts[6]),
        _unescape(parts[7]), _name(parts[8]),
        int(parts[9]), int(parts[10]), int(parts[11]), int(parts[12]),
    )
