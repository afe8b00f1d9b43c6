"""The control channel between the master and a worker: length-prefixed JSON over a socketpair.

Master → worker: {"type": "config", "settings": {...}, "snapshot": {...}}, {"type": "drain"}.
Worker → master: {"type": "ready"}, {"type": "applied", "version": N}, {"type": "stats", ...}.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 256 * 1024 * 1024  # a snapshot of a very large configuration still fits


def encode(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return _HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None when the other side has closed the channel."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (length,) = _HEADER.unpack(header)
        if length > MAX_MESSAGE:
            raise ValueError(f"control message of {length} bytes is over the limit")
        message = orjson.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message  # type: ignore[no-any-return]


class Channel:
    """One end of a control socketpair, for asyncio code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: Any) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE)
        return cls(reader, writer)

    async def send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode(message))
        await self.writer.drain()

    async def receive(self) -> dict[str, Any] | None:
        return await read_message(self.reader)

    def close(self) -> None:
        self.writer.close()
