"""Large bodies stream through a proxy process with bounded memory, with backpressure both ways."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, free_port, wait_for_port
from tests.proxy.conftest import read_head, route, service, snapshot

SIZE = 200 * 1024 * 1024
BLOCK = b"z" * (1024 * 1024)
RSS_GROWTH_LIMIT = 48 * 1024 * 1024


@pytest.fixture
def proxy_process(tmp_path: Path, raw_upstreams):
    async def stream(reader, writer):
        line, headers = await read_head(reader)
        if line.startswith("POST"):
            await asyncio.sleep(1.0)  # let the client fill every buffer first
            remaining = int(headers["content-length"])
            while remaining:
                remaining -= len(await reader.read(min(remaining, 1 << 20)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
            for _ in range(SIZE // len(BLOCK)):
                writer.write(BLOCK)
                await writer.drain()
        await writer.drain()

    upstream = raw_upstreams(stream)
    svc = service(upstream.port)
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot([svc], [route(svc, ["/"])])))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_proxy.py")), str(port), str(path)],
                            cwd=ROOT)
    try:
        wait_for_port(port)
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


class PeakRss:
    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.base = process.memory_info().rss
        self.peak = self.base
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak - self.base


def test_200mb_download_with_a_slow_client_keeps_memory_bounded(proxy_process):
    port, process = proxy_process
    rss = PeakRss(process)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)  # not reading: the proxy must stop reading the upstream
        received = 0
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        received = len(head.partition(b"\r\n\r\n")[2])
        while received < SIZE:
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
    growth = rss.stop()
    print(f"download: RSS growth {growth / 1e6:.1f} MB")
    assert received == SIZE
    assert growth < RSS_GROWTH_LIMIT


def test_200mb_upload_to_a_slow_upstream_keeps_memory_bounded(proxy_process):
    port, process = proxy_process
    rss = PeakRss(process)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(BLOCK)):
            sock.sendall(BLOCK)
        response = b""
        while not response.endswith(b"ok"):
            response += sock.recv(4096)
    growth = rss.stop()
    print(f"upload: RSS growth {growth / 1e6:.1f} MB")
    assert response.startswith(b"HTTP/1.1 200")
    assert growth < RSS_GROWTH_LIMIT
