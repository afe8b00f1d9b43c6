"""Quick load test: requests/s direct to an upstream vs through the proxy (one worker, key-auth).

    .venv/bin/python bench/proxy_quick.py [--connections 50] [--duration 5] [--access-log FILE]
                                          [--access-log-format text|json]

Starts a minimal uvloop upstream (fixed 200 answer) and a proxy process (tests/proxy/serve_proxy.py)
with one route and key-auth, then drives N keep-alive connections with raw asyncio sockets for a
fixed duration against each. The load generator runs in this process (one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, wait_for_port  # noqa: E402

UPSTREAM = r'''
import asyncio, sys, uvloop
BODY = b'{"ok":true}'
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rindex(b"\r\n\r\n") + 4:]
            self.t.write(RESP * n)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()
uvloop.install(); asyncio.run(main())
'''


async def client(port: int, request: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    while time.monotonic() < stop_at:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode())
        done += 1
    counts.append(done)
    writer.close()


async def load(port: int, request: bytes, connections: int, duration: float) -> float:
    await asyncio.gather(*(client(port, request, time.monotonic() + 0.5, []) for _ in range(connections)))
    counts: list[int] = []
    started = time.monotonic()
    await asyncio.gather(*(client(port, request, started + duration, counts) for _ in range(connections)))
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--access-log", default="off",
                        help="the proxy's access_log: off, stdout or a file (relative: in a temporary prefix)")
    parser.add_argument("--access-log-format", default="text", choices=("text", "json"))
    args = parser.parse_args()

    up_port, proxy_port = free_port(), free_port()
    svc = {"id": str(uuid.uuid4()), "name": "up", "protocol": "http", "host": "127.0.0.1", "port": up_port,
           "path": None, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
           "enabled": True, "tls_verify": None, "tags": None}
    rte = {"id": str(uuid.uuid4()), "name": "r", "service": {"id": svc["id"]}, "protocols": ["http"],
           "methods": None, "hosts": None, "paths": ["/bench"], "headers": None, "strip_path": True,
           "preserve_host": False, "regex_priority": 0, "path_handling": "v0"}
    consumer = {"id": str(uuid.uuid4()), "username": "bench", "custom_id": None}
    snapshot = {"version": 1, "services": [svc], "routes": [rte], "consumers": [consumer],
                "plugins": [{"id": str(uuid.uuid4()), "name": "key-auth", "enabled": True, "route": None,
                             "service": None, "consumer": None,
                             "config": {"key_names": ["apikey"], "hide_credentials": False, "anonymous": None,
                                        "key_in_header": True, "key_in_query": True, "key_in_body": False,
                                        "run_on_preflight": True}}],
                "keyauth_credentials": [{"id": str(uuid.uuid4()), "consumer": {"id": consumer["id"]},
                                         "key": "bench-key"}]}
    with tempfile.TemporaryDirectory() as tmp:
        snap = Path(tmp) / "snapshot.json"
        snap.write_text(json.dumps(snapshot))
        overrides = Path(tmp) / "settings.json"
        overrides.write_text(json.dumps({"access_log": args.access_log, "access_log_format": args.access_log_format}))
        procs = [subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)]),
                 subprocess.Popen([sys.executable, str(ROOT / "tests/proxy/serve_proxy.py"), str(proxy_port),
                                   str(snap), str(overrides)], cwd=ROOT)]
        try:
            wait_for_port(up_port)
            wait_for_port(proxy_port)
            uvloop.install()
            direct = asyncio.run(load(up_port, b"GET /bench HTTP/1.1\r\nHost: up\r\n\r\n",
                                      args.connections, args.duration))
            proxied = asyncio.run(load(proxy_port, b"GET /bench HTTP/1.1\r\nHost: gw\r\napikey: bench-key\r\n\r\n",
                                       args.connections, args.duration))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    print(f"connections={args.connections} duration={args.duration}s")
    print(f"direct to upstream : {direct:10.0f} req/s")
    print(f"through the proxy  : {proxied:10.0f} req/s (one worker, key-auth, access_log {args.access_log}"
          f"{'' if args.access_log == 'off' else ' ' + args.access_log_format})")


if __name__ == "__main__":
    main()
