"""A tiny mockbin-like upstream for the quickstart: every request is answered with a JSON echo.

    python -m tollway.mockbin PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = (request_line.split(" ") + ["", ""])[:3]
            headers = {}
            for line in lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            path, _, query = target.partition("?")
            payload = orjson.dumps({"method": method, "path": path, "query": query,
                                    "headers": headers, "body_length": len(body)})
            writer.write(b"".join([
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
                b"Content-Length: %d\r\n\r\n" % len(payload), payload,
            ]))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(_serve_connection, host, port)


async def _main(port: int) -> None:
    server = await serve("127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(_main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
