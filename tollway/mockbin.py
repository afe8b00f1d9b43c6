"""A small mockbin-like upstream: the quickstart's `mock` service and the tests' echo upstream.

    python -m tollway.mockbin [PORT]      # PORT 0 or none: a free port

Once it listens it prints `mockbin listening on 127.0.0.1:PORT` (`spawn` reads the port there).
Every request is answered 200 with a JSON echo of it (method, path, query, headers with lower-cased
names, body_length), except:
  /status/NNN   answers with status NNN (200-599) and the echo
  /bytes/N      answers with N bytes of 'x'
  /delay/MS     answers with the echo after MS milliseconds
HTTP/1.1: connections are kept alive (HTTP/1.0 ones only with `Connection: keep-alive`) until a
`Connection: close`; HEAD gets the head alone; request bodies may be chunked; `Expect:
100-continue` gets its interim answer. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import http
import json
import select
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
READY_LINE = "mockbin listening on 127.0.0.1:"


class BadRequest(Exception):
    """The client sent something that is not an HTTP/1.x request."""


@dataclass
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]  # lower-cased names; of a repeated header, the last value
    body: bytes

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                while chunk != b"\r\n":  # trailer fields, up to the empty line
                    chunk = await reader.readuntil(b"\r\n")
                return b"".join(chunks)
            chunks.append(chunk[:-2])
    length = int(headers.get("content-length") or 0)
    return await reader.readexactly(length) if length else b""


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """The next request on a connection, or None when the client has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("the connection closed within a request head") from exc
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not an HTTP/1.x request line: {request_line!r}")
    method, target, version = parts
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(reader, headers)
    path, _, query = target.partition("?")
    return Request(method, path, query, version, headers, body)


async def answer(request: Request) -> tuple[int, str, bytes]:
    """The status, content type and body for a request, as the module docstring describes."""
    parts = request.path.strip("/").split("/")
    if len(parts) == 2 and parts[1].isdigit():
        kind, number = parts[0], int(parts[1])
        if kind == "bytes":
            return 200, "application/octet-stream", b"x" * number
        if kind == "delay":
            await asyncio.sleep(number / 1000)
        if kind == "status" and 200 <= number <= 599:
            return number, "application/json", echo(request)
    return 200, "application/json", echo(request)


def echo(request: Request) -> bytes:
    return json.dumps({"method": request.method, "path": request.path, "query": request.query,
                       "headers": request.headers, "body_length": len(request.body)}).encode()


def response_head(status: int, content_type: str, payload: bytes, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}"]
    if status not in (204, 304):  # these have no body, and 204 no Content-Length either
        lines.append(f"Content-Length: {len(payload)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while (request := await read_request(reader, writer)) is not None:
            status, content_type, payload = await answer(request)
            keep_alive = request.keep_alive
            with_body = request.method != "HEAD" and status not in (204, 304)
            writer.write(response_head(status, content_type, payload, keep_alive) + (payload if with_body else b""))
            await writer.drain()
            if not keep_alive:
                break
    except (BadRequest, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # a broken client: drop its connection
    finally:
        writer.close()


async def serve(port: int = 0) -> asyncio.Server:
    """A mockbin listening on 127.0.0.1:`port` (0: a free one) on the running loop."""
    return await asyncio.start_server(serve_connection, "127.0.0.1", port, limit=MAX_HEAD)


def spawn(timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start `python -m tollway.mockbin` in a child process; it and the port it listens on.

    Raises RuntimeError, with the last line the child said, when it does not listen within `timeout`.
    """
    with tempfile.TemporaryFile() as stderr:
        # -P: the current directory (which may hold a `tollway/` folder of its own) is not searched
        proc = subprocess.Popen([sys.executable, "-P", "-m", "tollway.mockbin", "0"],
                                stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode(errors="replace") if ready else ""
        proc.stdout.close()
        if line.startswith(READY_LINE):
            return proc, int(line[len(READY_LINE):])
        proc.kill()
        proc.wait()
        stderr.seek(0)
        said = stderr.read().decode(errors="replace").strip().splitlines()
    raise RuntimeError("the mock upstream (python -m tollway.mockbin) did not start: "
                       + (said[-1] if said else f"it said nothing within {timeout:.0f}s"))


async def _main(port: int) -> None:
    server = await serve(port)
    print(READY_LINE + str(server.sockets[0].getsockname()[1]), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
