"""Thousands of hostile requests against a proxy process leave its memory and descriptors flat.

The proxy runs in its own process (tests/proxy/serve_proxy.py) with tight limits; the requests mix
every kind of test_hostile.py, random garbage, slow heads and clients that vanish mid-request, with
a few well-formed ones in between. Only the well-formed ones may reach the upstream whole.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, free_port, wait_for_port
from tests.proxy.conftest import request, route, service, snapshot
from tests.proxy.test_hostile import SMUGGLING

WARM_UP = 6000  # the allocator and caches reach their working size (+4 to +8 MB), then stay
HOSTILE = 3000
CONCURRENCY = 40
RSS_BOUND = 4 * 1024 * 1024  # one leaked connection (protocol, transport, call, buffers) is several kB
FD_BOUND = 2

GOOD = b"GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def hostile_requests(rng: random.Random) -> list[tuple[str, bytes]]:
    """One of each kind; garbage is drawn anew every time."""
    kinds = [(name, data) for name, data in SMUGGLING.items()]
    kinds += [
        ("header too large", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"),
        ("endless header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"e" * 40000),
        ("too many headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 60 + b"\r\n"),
        ("url too long", b"GET /" + b"u" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("body too large", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" + b"b" * 1000),
        ("chunked too large", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              + b"4000\r\n" + b"c" * 0x4000 + b"\r\n" * 5),
        ("slow head, then gone", b"GET / HTTP/1.1\r\nHo"),
        ("body, then gone", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"p" * 100),
        ("good then bad", b"GET /good HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
        ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
    ]
    return kinds


async def send_one(port: int, data: bytes, vanish: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if vanish:
            await asyncio.sleep(0.01)
            writer.transport.abort()
            return
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(3):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def storm(port: int, count: int, rng: random.Random) -> int:
    """Send `count` hostile requests (and a good one every 50th); the number of good requests sent."""
    kinds = hostile_requests(rng)
    queue: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
    good = 0
    for index in range(count):
        if index % 50 == 0:
            queue.put_nowait((GOOD, False))
            good += 1
        if rng.random() < 0.15:
            queue.put_nowait((rng.randbytes(rng.randint(1, 3000)), False))
            continue
        name, data = rng.choice(kinds)
        if name == "good then bad":
            good += 1
        queue.put_nowait((data, name.endswith("gone")))

    async def worker() -> None:
        while not queue.empty():
            data, vanish = queue.get_nowait()
            await send_one(port, data, vanish)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return good


def settle(process: psutil.Process) -> tuple[int, int]:
    """RSS and open descriptors once the proxy has closed what the storm left (lingering sockets)."""
    time.sleep(0.5)
    deadline = time.monotonic() + 10
    fds = process.num_fds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = process.num_fds()
        if now == fds:
            break
        fds = now
    return process.memory_info().rss, process.num_fds()


@pytest.fixture
def proxy_process(tmp_path: Path, recording_upstream):
    svc = service(recording_upstream.port)
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(snapshot([svc], [route(svc, ["/"])])))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({
        "client_max_body_size": "64k", "client_max_header_size": "8k", "client_max_headers": "50",
        "client_max_url_length": "2k", "client_header_timeout": "1", "client_keepalive_timeout": "2",
        "upstream_keepalive_pool_size": "4"}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_proxy.py")), str(port),
                             str(snap), str(settings)], cwd=ROOT)
    try:
        wait_for_port(port)
        yield port, psutil.Process(proc.pid), recording_upstream
    finally:
        proc.terminate()
        proc.wait(10)


def test_thousands_of_hostile_requests_leave_rss_and_descriptors_flat(proxy_process):
    port, process, upstream = proxy_process
    rng = random.Random(7)
    good = asyncio.run(storm(port, WARM_UP, rng))
    rss_before, fds_before = settle(process)
    started = time.monotonic()
    good += asyncio.run(storm(port, HOSTILE, rng))
    elapsed = time.monotonic() - started
    rss_after, fds_after = settle(process)
    print(f"\n{HOSTILE} hostile requests in {elapsed:.1f}s: RSS {rss_before / 1e6:.1f} -> {rss_after / 1e6:.1f} MB "
          f"({(rss_after - rss_before) / 1e3:+.0f} kB), open fds {fds_before} -> {fds_after}")
    assert rss_after - rss_before < RSS_BOUND
    assert fds_after <= fds_before + FD_BOUND
    assert request(port, "GET", "/still-there").status == 200
    deadline = time.monotonic() + 2
    while upstream.answered < good + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # No hostile request reached the upstream whole (a valid head whose body then broke or grew
    # too large was streamed, and abandoned).
    assert upstream.answered == good + 1
