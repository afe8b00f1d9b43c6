"""A WebSocket tunnel: once a client's Upgrade request is parsed, what it sends is the WebSocket's.

Those bytes are held (in the call's body queue, under the usual flow control) until the upstream
agrees with a 101, then relayed raw both ways until either side closes; the call is metered then
(`Exchange.upstream_done`).
"""

from __future__ import annotations

from tollway.proxy.call import Call
from tollway.proxy.connection import ClientConnection
from tollway.proxy.upstream_connection import UpstreamConnection

__all__ = ["Tunnel"]


class Tunnel:
    """The WebSocket of one client connection, if it asked for one."""

    __slots__ = ("call", "conn")

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.call: Call | None = None  # the WebSocket call whose bytes now flow raw

    def begin(self, call: Call) -> None:
        """llhttp stopped after `call`'s Upgrade request: what follows is the WebSocket's."""
        self.call = call

    def open(self, call: Call, upstream: UpstreamConnection) -> None:
        """The upstream agreed (its 101 is written): send what the client sent meanwhile."""
        self.call = call
        queued = call.body_queue
        call.body_queue = []
        call.queued_bytes = 0
        for chunk in queued:
            upstream.write(chunk)
        self.conn.update_reading()

    def from_client(self, data: bytes) -> None:
        call = self.call
        assert call is not None
        call.request_bytes += len(data)
        upstream = call.upstream
        if upstream is not None and upstream.tunnel:
            upstream.write(data)
        else:
            call.body_queue.append(data)
            call.queued_bytes += len(data)
            self.conn.update_reading()

    def from_upstream(self, data: bytes) -> None:
        call = self.conn.current
        if call is not None:
            call.response_bytes += len(data)
        self.conn.transport.write(data)
