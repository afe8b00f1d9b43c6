"""The Admin API's HTTP connections, bounded as nginx bounds Kong's: time, count and size.

uvicorn serves the Admin API, and by itself never times out a connection that has not finished
sending a request head: a client that connects and stays silent (or sends a byte now and then)
holds a descriptor of the master for as long as it likes, and enough of them starve the flusher
and the database of descriptors. `bounded_protocol(limits)` gives uvicorn's httptools protocol
with these bounds (settings admin_*):

  header_timeout     a request head must arrive within it, from the connection or from the
                     first byte of a request on a kept-alive one: 408 and close
  body_timeout       the longest pause between two reads of a request body: 408 and close
  keepalive_timeout  an idle kept-alive connection is closed (uvicorn's own timer)
  max_connections    connections beyond it are closed as soon as accepted
  max_body_size      a larger body (Content-Length or chunked) is answered 413, and the connection closed
  max_head_size      a larger request head (line and headers; client_max_header_size) is answered 431

`Limits.for_process` caps max_connections so that the master keeps RESERVED_DESCRIPTORS
descriptors for its workers, the flusher, the spool and the database, whatever clients do.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any, NamedTuple

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tollway.config import Settings

log = logging.getLogger("tollway.admin")

RESERVED_DESCRIPTORS = 128  # kept for the master's own work when clients hold every connection


class Limits(NamedTuple):
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_body_size: int
    max_head_size: int

    @classmethod
    def for_process(cls, settings: Settings) -> Limits:
        """The settings' limits; raises this process's descriptor limit to its hard limit (as nginx's
        worker_rlimit_nofile) and keeps RESERVED_DESCRIPTORS of it out of the clients' reach."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                soft = wanted
            except (ValueError, OSError):
                pass
        room = max(1, soft - RESERVED_DESCRIPTORS)
        if settings.admin_max_connections > room:
            log.warning("admin_max_connections = %d, but this process may open %d descriptors: the Admin API "
                        "takes at most %d connections", settings.admin_max_connections, soft, room)
        return cls(settings.admin_header_timeout, settings.admin_body_timeout,
                   min(settings.admin_max_connections, room), settings.admin_max_body_size or 1 << 62,
                   settings.client_max_header_size or 1 << 62)


def _error(status: int, message: str) -> bytes:
    body = orjson.dumps({"message": message})
    return b"".join([STATUS_LINE[status], b"content-type: application/json; charset=utf-8\r\n",
                     b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body])


def bounded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits` (see the module docstring)."""

    class BoundedProtocol(HttpToolsProtocol):
        refused = 0  # connections closed as accepted, over max_connections

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.deadline: asyncio.TimerHandle | None = None
            self.body_bytes = 0
            self.head_bytes = 0
            self.in_body = False
            self.done = False  # refused, timed out or over a limit: nothing more is read

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                BoundedProtocol.refused += 1
                self.done = True
                self.transport = transport
                transport.abort()
                return
            super().connection_made(transport)
            self._arm(limits.header_timeout)  # a new connection has this long to send a request head

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self.flow is None:
                return  # refused as it was accepted: uvicorn never saw it
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.done:
                return
            if self.in_body:
                self._arm(limits.body_timeout)  # the clock restarts with every read of a body
            super().data_received(data)

        # Parser callbacks: after a refusal, llhttp may still call them for the rest of the read.

        def on_message_begin(self) -> None:
            if self.done:
                return
            super().on_message_begin()
            self.body_bytes = self.head_bytes = 0
            self._arm(limits.header_timeout)

        def on_url(self, url: bytes) -> None:
            if self.done:
                return
            self.head_bytes += len(url)
            if self.head_bytes > limits.max_head_size:
                self._refuse(414, "URI too long")
                return
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self.done:
                return
            self.head_bytes += len(name) + len(value) + 4
            if self.head_bytes > limits.max_head_size:
                self._refuse(431, "Request header or cookie too large")
                return
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self.done:
                return
            length = next((value for name, value in self.headers if name == b"content-length"), None)
            if length is not None and length.isdigit() and int(length) > limits.max_body_size:
                self._refuse(413, "Request size limit exceeded")
                return
            super().on_headers_complete()
            self.in_body = True
            self._arm(limits.body_timeout)

        def on_body(self, body: bytes) -> None:
            if self.done:
                return
            self.body_bytes += len(body)
            if self.body_bytes > limits.max_body_size:
                self._refuse(413, "Request size limit exceeded")
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            if self.done:
                return
            self.in_body = False
            self._disarm()
            super().on_message_complete()

        def _arm(self, timeout: float) -> None:
            self._disarm()
            if timeout > 0:
                self.deadline = self.loop.call_later(timeout, self._timed_out)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _timed_out(self) -> None:
            self.deadline = None
            if self.cycle is not None and not self.cycle.response_complete and not self.in_body:
                return  # a request being answered: the response's own business
            self._refuse(408, "Request timeout")

        def _refuse(self, status: int, message: str) -> None:
            """Answer in Kong's shape and close; a request not read in full never reaches the app."""
            self._disarm()
            self.done = True
            self.in_body = False
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # an app still reading the body sees the client gone
                self.cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.write(_error(status, message))
                self.transport.close()

    return BoundedProtocol
