"""Responses as one client connection receives them: an upstream's, framed anew for this client,
and the gateway's own (errors, plugin replies, refusals).

An upstream's head is rewritten (tollway.proxy.headers) and framed for the client: by its
Content-Length when it has one and no body_filter may change the body, else chunked (HTTP/1.1)
or until close (HTTP/1.0). The head is not written at once: it goes out with the first body
bytes, in one write, or when the upstream's read that carried it has been parsed
(`flush_head`), so that an upstream that fails right after its head still gets the client a
clean 502.

Every response is metered (tollway.proxy.chain.run_meter) just before its last byte is written.
"""

from __future__ import annotations

from typing import Final

from tollway.plugins.base import Reply
from tollway.proxy import responses
from tollway.proxy.call import Call, appended_headers, apply_header_changes
from tollway.proxy.chain import Chain, run_body_filter, run_header_filter, run_log, run_meter
from tollway.proxy.connection import ClientConnection
from tollway.proxy.headers import JoinedLines, join_lines, response_head
from tollway.proxy.responses import Rejected
from tollway.proxy.upstream_connection import UpstreamConnection

__all__ = ["ResponseWriter"]

# How the body of the response being written is framed for the client.
_NO_BODY: Final = 0
_LENGTH: Final = 1
_CHUNKED: Final = 2
_UNTIL_CLOSE: Final = 3


class ResponseWriter:
    """Writes the responses of one client connection, one at a time (that of `conn.current`)."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        # The response being written
        self.out_mode = _NO_BODY
        self.remaining = 0              # of a Content-Length body
        self.unsent_head: bytes | None = None  # a head that waits for the first body bytes (see flush_head)
        # Parts of the last response head, made again only when they differ (Performance notes:
        # kept lines): the upstreams' header lines as joined, the Content-Length and latency lines.
        self.joined_lines = JoinedLines()
        self.length_size = -1
        self.length_line = b""
        self.upstream_ms = -1
        self.proxy_ms = -1
        self.latency_lines = b""

    # An upstream's response ---------------------------------------------------------------------

    def head(self, call: Call, upstream: UpstreamConnection, status: int, raw: list[tuple[bytes, bytes]],
             upgrade: bool) -> None:
        """The upstream's head: run header_filter, frame it for this client, hold or write it.

        `upgrade`: a 101 for the client's WebSocket, written at once (the caller opens the tunnel).
        """
        headers = raw  # framing and hop-by-hop headers are already out (UpstreamConnection.on_header)
        if upstream.hop_tokens:
            headers = [item for item in raw if item[0].lower() not in upstream.hop_tokens]
        if upgrade and upstream.upgrade_header is not None:
            headers.append(upstream.upgrade_header)
        via = upstream.via
        call.status = status
        call.response_headers = headers
        chain: Chain | None = call.chain
        filtered = chain is not None and bool(chain.header_filter)
        lines: bytes | None = None  # the header lines, when known before header_filter
        added_lines = b""
        changes = call.changes
        if changes is not None and (changes.response_block is not None or changes.response_headers):  # made in access
            if filtered:
                apply_header_changes(headers, changes.header_changes())
            else:  # the upstream's lines stay kept, the plugins' come after them (Performance notes: added lines)
                lines = self.joined_lines.join(headers)
                block = changes.response_block
                if block is not None and self.joined_lines.has_none_of(block.names):
                    call.added_block = block  # in call.response_headers when first read
                    added_lines = block.lines
                else:
                    added = appended_headers(self.joined_lines.lowered_names(), changes.header_changes())
                    if added is not None:
                        headers.extend(added)
                        added_lines = join_lines(added)
                    else:
                        apply_header_changes(headers, changes.response_headers)
                        lines = join_lines(headers)
        if filtered:
            run_header_filter(call)
        length = upstream.content_length
        size = 0  # an int, which mypyc formats inline (Performance notes: compiled hot path)
        if length is not None:
            size = length
        keep_alive = self.conn.keeps_alive(call)
        if upgrade:
            mode = _NO_BODY
            framing = b"Connection: upgrade\r\n"
        elif call.method == "HEAD" or status in (204, 304) or status < 200:
            mode = _NO_BODY
            framing = b"Content-Length: %d\r\n" % size if length is not None and call.method == "HEAD" else b""
        elif length is not None and not (chain is not None and chain.body_filter):
            mode = _LENGTH if length else _NO_BODY
            framing = self._length_line(size)
        elif call.http_11:
            mode = _CHUNKED
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            mode = _UNTIL_CLOSE
            keep_alive = False
            framing = b""
        connection = b""
        if not upgrade:
            if not keep_alive:
                connection = b"Connection: close\r\n"
            elif not call.http_11:
                connection = b"Connection: keep-alive\r\n"
        call.keep_alive = keep_alive
        latency = self._latency_lines(int((call.first_byte_at - call.sent_at) * 1000),
                                      int((call.sent_at - call.received_at) * 1000))
        line = responses.STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status
        if lines is None:
            lines = self.joined_lines.join(call.response_headers)
        head = response_head(line, lines, via, framing, connection, latency, added_lines)
        self.out_mode = mode
        self.remaining = length or 0
        call.head_sent = True
        call.response_bytes += len(head)
        if upgrade:
            self.conn.transport.write(head)
        elif mode == _NO_BODY:
            run_meter(call)
            self.conn.transport.write(head)
        else:
            self.unsent_head = head

    def _length_line(self, size: int) -> bytes:
        if size != self.length_size:
            self.length_size = size
            self.length_line = b"Content-Length: %d\r\n" % size
        return self.length_line

    def _latency_lines(self, upstream_ms: int, proxy_ms: int) -> bytes:
        if upstream_ms != self.upstream_ms or proxy_ms != self.proxy_ms:
            self.upstream_ms = upstream_ms
            self.proxy_ms = proxy_ms
            self.latency_lines = b"X-Tollway-Upstream-Latency: %d\r\nX-Tollway-Proxy-Latency: %d\r\n" % (
                upstream_ms, proxy_ms)
        return self.latency_lines

    def body(self, call: Call, chunk: bytes) -> None:
        """A chunk of the upstream's body, through body_filter, framed for the client."""
        mode = self.out_mode
        if mode == _NO_BODY:
            return
        chain: Chain | None = call.chain
        if chain is not None and chain.body_filter:
            chunk = run_body_filter(call, chunk, False)
            if not chunk:
                return
        head = self.unsent_head
        self.unsent_head = None
        transport = self.conn.transport
        if mode == _CHUNKED:
            size = b"%x\r\n" % len(chunk)
            call.response_bytes += len(size) + len(chunk) + 2
            transport.writelines([head, size, chunk, b"\r\n"] if head else [size, chunk, b"\r\n"])
            return
        call.response_bytes += len(chunk)
        if mode == _LENGTH:
            self.remaining -= len(chunk)
            if self.remaining <= 0:
                run_meter(call)
        if head:
            transport.writelines([head, chunk])
        else:
            transport.write(chunk)

    def flush_head(self) -> None:
        """The upstream's latest read is parsed: a head still held goes out now."""
        head = self.unsent_head
        if head is not None:
            self.unsent_head = None
            self.conn.transport.write(head)

    def finish(self, call: Call) -> None:
        """The upstream's response is complete: end the body (and meter)."""
        if self.out_mode == _CHUNKED:
            last = b"0\r\n\r\n"
            chain: Chain | None = call.chain
            if chain is not None and chain.body_filter:
                tail = run_body_filter(call, b"", True)
                if tail:
                    last = b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail)
            call.response_bytes += len(last)
            run_meter(call)
            head = self.unsent_head
            self.unsent_head = None
            self.conn.transport.write(head + last if head else last)
        else:
            run_meter(call)
            self.flush_head()

    def drop_unsent_head(self, call: Call) -> None:
        """The upstream failed: a head that never left is taken back, so the client can still
        get a clean error."""
        if self.unsent_head is not None:
            call.response_bytes -= len(self.unsent_head)
            call.head_sent = False
            self.unsent_head = None

    def cut_off(self, call: Call) -> None:
        """Part of the response is out: the client can only learn of a failure by a close."""
        call.keep_alive = False
        call.response_done = True
        run_meter(call)
        run_log(call)
        if self.conn.access_log is not None:
            self.conn.log_access(call)
        self.conn.transport.close()

    # The gateway's own --------------------------------------------------------------------------

    def reply(self, call: Call, reply: Reply) -> None:
        """Answer `call` with a response of the gateway's (or a plugin's) own."""
        keep_alive = self.conn.keeps_alive(call)
        if not call.request_done:
            if call.expect_continue or call.upgrade is not None:
                keep_alive = False  # the client may or may not send the body now
            else:
                call.discard_body = True
        call.keep_alive = keep_alive
        headers = responses.reply_headers(reply)
        changes = call.changes
        if changes is not None and changes.header_changes():  # made in access
            apply_header_changes(headers, changes.response_headers)
        data, status = responses.render(reply, keep_alive, call.method == "HEAD", headers=headers)
        call.status = status
        call.response_headers = headers
        call.head_sent = True
        call.response_bytes += len(data)
        run_meter(call)
        self.conn.transport.write(data)

    def write_continue(self, call: Call) -> None:
        """`100 Continue`: the client waits for it before sending its body."""
        call.response_bytes += len(responses.CONTINUE)
        self.conn.transport.write(responses.CONTINUE)

    def write_rejection(self, rejected: Rejected) -> None:
        """The answer to a request refused before it had a Call started; the connection closes."""
        data, _ = responses.render(Reply(rejected.status, {"message": rejected.message}), False)
        conn = self.conn
        conn.transport.write(data)
        if conn.access_log is not None:
            conn.access_log.record_refusal(conn.client_ip, rejected.status, len(data))
        conn.close()
