"""Run a ProxyServer in its own process: `python serve_proxy.py PORT SNAPSHOT.json [SETTINGS.json]`.

SETTINGS.json, when given, holds setting overrides as strings (`{"client_max_body_size": "64k"}`).

Used by tests that measure the proxy's memory, and by bench/proxy_quick.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from tollway.config import load_settings
from tollway.metering.spool import SpoolWriter
from tollway.proxy.server import ProxyServer


async def main(port: int, snapshot: dict[str, Any], overrides: dict[str, str], billable: bool = False) -> None:
    """Serve `snapshot` on `port` until killed; with `billable`, calls are metered into a spool in the
    temporary prefix (bench/instructions.py counts that path)."""
    settings = load_settings(environ={}, prefix=tempfile.mkdtemp(), proxy_listen=f"127.0.0.1:{port}", **overrides)
    spool = SpoolWriter(settings.spool_dir, "serve-proxy") if billable else None
    server = ProxyServer(settings, spool=spool)
    server.apply(snapshot)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    await server.serve(sock)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.install()
    overrides = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}
    asyncio.run(main(int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), overrides))
