"""The proxy's access log: one line per call, kept in memory by each worker and appended in batches.

    AccessLog.from_settings(settings)  None when `access_log` is off; otherwise the file is opened
                                       (a ConfigError says why it cannot be)
    log.start(loop)                    the loop its flush timer runs on (the server's, at serve)
    log.record(call, now)              the call is over: its line is encoded and kept
    log.flush()                        write the kept lines: FLUSH_INTERVAL after the first one
                                       kept, or at once past FLUSH_BYTES
    log.close()                        flush, and write later lines at once (a worker's drain)

A call is recorded where the proxy ends it (a response complete, one cut off, a client that went
away), so a request answered by the gateway itself (401, 404, 502) is logged as one proxied; a
request refused before its head was whole (400, 408, 414, 431) by `record_refusal`, with what is
known of it.
Nothing is written per call: the request path appends a bytes object to a list.

Every worker of a node appends to the same file, opened with O_APPEND, and every write() holds
whole lines: the kernel appends each write() to a regular file in one piece, so lines of two
workers never interleave. A pipe (stdout) keeps a write() whole only up to PIPE_BUF bytes, so
there the lines are written in batches below it.

Rotation: a reload (SIGHUP, `tollway reload`) starts new workers, which open the file anew, and
every flush checks that the path still names the file open (device and inode) and opens it again
when it was moved or removed, so logrotate works with or without a reload.

The fields are Kong's log serializer's, flattened (docs/access-log.md):
    text  CLIENT - CONSUMER [TIME] "METHOD URI HTTP/1.1" STATUS RESPONSE_BYTES "REFERER" "USER_AGENT"
          request_bytes=N kong_ms=N upstream_ms=N request_ms=N service=NAME route=NAME
    json  {"time", "client_ip", "consumer", "method", "uri", "protocol", "status", "request_bytes",
           "response_bytes", "latencies": {"kong", "proxy", "request"}, "service", "route",
           "referer", "user_agent"}
TIME is the request's start, ISO 8601 in UTC with milliseconds. `kong` is the time from the
request head to the upstream (the whole call when it never reached one); Kong's `proxy` (text:
upstream_ms) is the upstream's, from the request sent to its first response byte, -1 when none
was asked; `request` the whole call, to its last byte written. Text escapes `"`, `\\`, spaces in
unquoted fields and bytes that are not printable ASCII as \\xHH, as nginx does; JSON is written by
hand where a value needs no escape, by json.dumps where it does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import time
from collections.abc import Callable
from typing import Any, Final

from tollway.config import Settings
from tollway.errors import ConfigError
from tollway.proxy.call import Call

__all__ = ["FLUSH_BYTES", "FLUSH_INTERVAL", "AccessLog", "KeptName", "KeptValue", "json_value", "open_file",
           "text_value"]

log = logging.getLogger("tollway.proxy")

FLUSH_INTERVAL: Final = 1.0      # seconds a line waits at most before it is written
FLUSH_BYTES: Final = 64 * 1024   # kept bytes that are written at once
_STDOUT: Final = 1
_FILE_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def open_file(path: str) -> tuple[int, tuple[int, int]]:
    """Open (and create, with its folder) an access log file for appending: its descriptor and
    (device, inode). Raises ConfigError, which names the file and the reason."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, _FILE_FLAGS, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot open access_log {path}: {exc.strerror}") from exc
    stat = os.fstat(fd)
    return fd, (stat.st_dev, stat.st_ino)


# Maps every byte that needs escaping in either format (not printable ASCII, `"`, `\\`) to another
# byte: a value is plain when translating it changes nothing (one pass in C, Performance notes:
# translate tables).
_UNSAFE: Final = bytes(byte if 32 <= byte < 127 and byte not in (34, 92) else (34 if byte != 34 else 92)
                       for byte in range(256))


def _plain(data: bytes) -> bool:
    """Whether `data` is printable ASCII with nothing to escape in either format."""
    return data.translate(_UNSAFE) == data


def _escaped(data: bytes, space: bool) -> bytes:
    """`data` with `"`, `\\`, bytes that are not printable ASCII (and spaces, with `space`) as \\xHH."""
    out = []
    for byte in data:
        if 32 < byte < 127 and byte != 34 and byte != 92 or (byte == 32 and not space):
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02X}")
    return "".join(out).encode("ascii")


def text_value(data: bytes, quoted: bool) -> bytes:
    """A value as the text format writes it: "-" for none, escaped when needed (between quotes,
    a space needs no escape)."""
    if not data:
        return b"-"
    if _plain(data) and (quoted or data.find(b" ") < 0):
        return data
    return _escaped(data, not quoted)


def json_value(data: bytes, from_request: bool) -> bytes:
    """A JSON string of `data`: read from the request as Latin-1 (each byte a character), else UTF-8."""
    if _plain(data):
        return b'"' + data + b'"'
    return json.dumps(data.decode("latin-1" if from_request else "utf-8", "replace")).encode("ascii")


def _json_name(value: str | None) -> bytes:
    return b"null" if value is None else json_value(value.encode("utf-8", "replace"), False)


def _text_name(value: str | None) -> bytes:
    return b"-" if value is None else text_value(value.encode("utf-8", "replace"), False)


# ".000Z" to ".999Z": formatting an int costs more than an index (Performance notes: kept lines)
_MILLIS: Final = tuple(b".%03dZ" % ms for ms in range(1000))


class KeptName:
    """A consumer's, service's or route's name (else its id) as a line writes it, for the last
    entity seen: an entity is one dict for a whole configuration, so most calls cost an identity
    check (Performance notes: kept lines)."""

    def __init__(self, fields: tuple[str, str], encode: Callable[[str | None], bytes]) -> None:
        self.fields = fields
        self.encode = encode
        self.entity: dict[str, Any] | None = None
        self.text = encode(None)

    def of(self, entity: dict[str, Any] | None) -> bytes:
        if entity is self.entity:
            return self.text
        value = None
        if entity is not None:
            for field in self.fields:
                found = entity.get(field)
                if found is not None:
                    value = str(found)
                    break
        self.entity = entity
        self.text = self.encode(value)
        return self.text


class KeptValue:
    """A request header's value as a line writes it, for the last value seen: a client sends the
    same User-Agent, and Referer or none, call after call (Performance notes: kept lines)."""

    def __init__(self, json_format: bool) -> None:
        self.json_format = json_format
        self.raw = b""
        self.text = b"null" if json_format else b"-"
        self.none = self.text

    def of(self, raw: bytes) -> bytes:
        if not raw:
            return self.none
        if raw != self.raw:
            self.raw = raw
            self.text = json_value(raw, True) if self.json_format else text_value(raw, True)
        return self.text


class AccessLog:
    """One worker's access log: lines kept in memory, appended to a file or stdout in batches."""

    def __init__(self, path: str | None, json_format: bool) -> None:
        self.path = path                 # None: stdout
        self.json_format = json_format
        self.fd = _STDOUT
        self.file_id = (0, 0)            # (device, inode) of the file open, to notice it moved
        # A write() to a pipe is whole up to PIPE_BUF; to a regular file, whole whatever its size.
        self.write_limit = 2 * FLUSH_BYTES if path is not None else select.PIPE_BUF
        self.loop: asyncio.AbstractEventLoop | None = None
        # Lines not written yet, and their size
        self.lines: list[bytes] = []
        self.buffered = 0
        self.flush_at = FLUSH_BYTES      # 0 once closed: a call that ends later is written at once
        self.timer: asyncio.TimerHandle | None = None
        self.written = 0                 # lines
        self.dropped = 0                 # lines lost to a failed write
        self.failing = False
        # What the last lines held, encoded, and kept while it repeats (Performance notes: kept lines):
        # the UTC second of the last time and its text, the client's address, the entities' names.
        self.second = -1
        self.second_text = b""
        self.client_ip = ""
        self.client_text = b""
        encode = _json_name if json_format else _text_name
        self.consumer = KeptName(("username", "id"), encode)
        self.service = KeptName(("name", "id"), encode)
        self.route = KeptName(("name", "id"), encode)
        self.referer = KeptValue(json_format)
        self.user_agent = KeptValue(json_format)
        if path is not None:
            self._open()

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessLog | None:
        if settings.access_log == "off":
            return None
        path = settings.access_log_file
        return cls(None if path is None else str(path), settings.access_log_format == "json")

    def _open(self) -> None:
        assert self.path is not None
        self.fd, self.file_id = open_file(self.path)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    # The request path ---------------------------------------------------------------------------

    def record(self, call: Call, now: float) -> None:
        """Keep the line of a call that is over; `now` is the loop's clock (call.received_at's)."""
        self._keep(self.json_line(call, now) if self.json_format else self.text_line(call, now))

    def _keep(self, data: bytes) -> None:
        self.lines.append(data)
        self.buffered += len(data)
        if self.buffered >= self.flush_at:
            self.flush()
        elif self.timer is None and self.loop is not None:
            self.timer = self.loop.call_later(FLUSH_INTERVAL, self._flush_due)

    def _time(self, at: float) -> bytes:
        second = int(at)
        if second != self.second:
            self.second = second
            self.second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode("ascii")
        return self.second_text + _MILLIS[int((at - second) * 1000)]

    def _client(self, client_ip: str) -> bytes:
        if client_ip is not self.client_ip:
            self.client_ip = client_ip
            raw = client_ip.encode("latin-1", "replace")
            self.client_text = json_value(raw, True) if self.json_format else text_value(raw, False)
        return self.client_text

    @staticmethod
    def latencies(call: Call, now: float) -> tuple[int, int, int]:
        """(kong, upstream, request) milliseconds; upstream is -1 when no upstream was asked."""
        request = int((now - call.received_at) * 1000)
        sent = call.sent_at
        if sent == 0.0:
            return request, -1, request
        first = call.first_byte_at
        if first < sent:  # no answer: the wait until the call ended
            first = now
        return int((sent - call.received_at) * 1000), int((first - sent) * 1000), request

    @staticmethod
    def _headers(call: Call) -> tuple[bytes, bytes]:
        """The request's Referer and User-Agent, as sent (b"" when absent)."""
        referer = agent = b""
        for item in call.headers:
            name = item[0]
            if name == b"user-agent":
                agent = item[1]
            elif name == b"referer":
                referer = item[1]
        return referer, agent

    @staticmethod
    def _uri(call: Call) -> bytes:
        """The request's target (path and query; the query as plugins left it), as its bytes."""
        if call.query:
            return (call.path + "?" + call.query).encode("latin-1", "replace")
        return call.path.encode("latin-1", "replace")

    def text_line(self, call: Call, now: float) -> bytes:
        kong, upstream, request = self.latencies(call, now)
        referer, agent = self._headers(call)
        # One formatting (Performance notes: one formatting); a method is an HTTP token (llhttp
        # checks it), with nothing to escape.
        return b'%s - %s [%s] "%s %s %s" %d %d "%s" "%s" request_bytes=%d kong_ms=%d upstream_ms=%d ' \
            b"request_ms=%d service=%s route=%s\n" % (
                self._client(call.forwarded_ip), self.consumer.of(call.consumer), self._time(call.started_at),
                call.method_bytes, text_value(self._uri(call), True), b"HTTP/1.1" if call.http_11 else b"HTTP/1.0",
                call.status, call.response_bytes, self.referer.of(referer), self.user_agent.of(agent),
                call.request_bytes, kong, upstream, request, self.service.of(call.service), self.route.of(call.route))

    def json_line(self, call: Call, now: float) -> bytes:
        kong, upstream, request = self.latencies(call, now)
        referer, agent = self._headers(call)
        return b'{"time":"%s","client_ip":%s,"consumer":%s,"method":"%s","uri":%s,"protocol":"%s","status":%d,' \
            b'"request_bytes":%d,"response_bytes":%d,"latencies":{"kong":%d,"proxy":%d,"request":%d},' \
            b'"service":%s,"route":%s,"referer":%s,"user_agent":%s}\n' % (
                self._time(call.started_at), self._client(call.forwarded_ip), self.consumer.of(call.consumer),
                call.method_bytes, json_value(self._uri(call), True), b"HTTP/1.1" if call.http_11 else b"HTTP/1.0",
                call.status, call.request_bytes, call.response_bytes, kong, upstream, request,
                self.service.of(call.service), self.route.of(call.route), self.referer.of(referer),
                self.user_agent.of(agent))

    def record_refusal(self, client_ip: str, status: int, response_bytes: int) -> None:
        """Keep the line of a request refused before it was whole (a bad or too large head, a head
        too slow): no method, target or route, as nginx logs a 400."""
        at = time.time()
        if self.json_format:
            data = b'{"time":"%s","client_ip":%s,"consumer":null,"method":null,"uri":null,"protocol":null,' \
                b'"status":%d,"request_bytes":0,"response_bytes":%d,"latencies":{"kong":0,"proxy":-1,"request":0},' \
                b'"service":null,"route":null,"referer":null,"user_agent":null}\n' % (
                    self._time(at), self._client(client_ip), status, response_bytes)
        else:
            data = b'%s - - [%s] "-" %d %d "-" "-" request_bytes=0 kong_ms=0 upstream_ms=-1 request_ms=0 ' \
                b"service=- route=-\n" % (self._client(client_ip), self._time(at), status, response_bytes)
        self._keep(data)

    # Off the request path -----------------------------------------------------------------------

    def _flush_due(self) -> None:
        self.timer = None
        self.flush()

    def flush(self) -> None:
        """Write the kept lines, in write()s of whole lines no larger than `write_limit`."""
        lines = self.lines
        if not lines:
            return
        self.lines = []
        self.buffered = 0
        if self.path is not None and not self._follow_moves():
            self.dropped += len(lines)
            return
        limit = self.write_limit
        batch: list[bytes] = []
        size = 0
        for line in lines:
            if size and size + len(line) > limit:
                self._write(batch)
                batch = []
                size = 0
            batch.append(line)
            size += len(line)
        self._write(batch)

    def _write(self, batch: list[bytes]) -> None:
        data = b"".join(batch)
        try:
            done = os.write(self.fd, data)
            while done < len(data):  # only after an error part-way (a full disk): the rest, or the error
                done += os.write(self.fd, data[done:])
        except OSError as exc:
            self.dropped += len(batch)
            if not self.failing:
                self.failing = True
                log.error("access log %s cannot be written (%s); its lines are dropped until it can",
                          self.path or "stdout", exc.strerror or exc)
            return
        self.written += len(batch)
        if self.failing:
            self.failing = False
            log.warning("access log %s is written again; %d lines were dropped", self.path or "stdout", self.dropped)

    def _follow_moves(self) -> bool:
        """Open the path again when it no longer names the file open (logrotate moved it); False
        when it cannot be opened."""
        path = self.path
        assert path is not None
        try:
            stat = os.stat(path)
            if (stat.st_dev, stat.st_ino) == self.file_id:
                return True
        except OSError:
            pass
        old = self.fd
        try:
            self._open()
        except ConfigError as exc:
            if not self.failing:
                self.failing = True
                log.error("%s; its lines are dropped until it can be", exc)
            return False
        os.close(old)
        return True

    def close(self) -> None:
        """Write what is kept, and from now on each line at once (the worker stops: connections a
        drain aborted may still end). The file is closed with the process."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.flush_at = 0
        self.flush()
