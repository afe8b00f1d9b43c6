"""Child processes for the spool-failure tests: real write failures need a process of their own.

    python -m tests.metering.spool_child writer SPOOL_DIR
        a SpoolWriter under RLIMIT_FSIZE (Python ignores SIGXFSZ, so allocating a file past it
        raises EFBIG); prints one JSON line of what it saw.
    python -m tests.metering.spool_child starved SPOOL_DIR
        a SpoolWriter constructed when not even its first file can be allocated.
    python -m tests.metering.spool_child proxy PREFIX SNAPSHOT.json POLICY
        a ProxyServer with the billable handler and a spool of one call per file; SIGUSR1 makes
        allocating any file fail (RLIMIT_FSIZE 0), SIGUSR2 lifts it; prints its port, and at
        SIGTERM the spool's counters.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import sys
from pathlib import Path

from tests.metering.conftest import finished_call
from tollway.metering.spool import SpoolWriter

_, HARD = resource.getrlimit(resource.RLIMIT_FSIZE)


def fsize(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, HARD))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _names(spool_dir: str) -> list[str]:
    return sorted(p.name for p in Path(spool_dir).iterdir())


def writer(spool_dir: str) -> None:
    # One record per file (file_bytes=1): every call opens a file, so a failure shows at once.
    clock = Clock()
    spool = SpoolWriter(spool_dir, "w1", file_bytes=1, clock=clock)
    seen: dict[str, object] = {}
    spool.append(finished_call(started_at=1.0))        # recorded
    fsize(spool.recorded_bytes - 1)               # no file may be as long as a record any more
    spool.append(finished_call(started_at=2.0))        # its file cannot be allocated: EFBIG, dropped
    files_before = _names(spool_dir)
    clock.now += 0.5
    spool.append(finished_call(started_at=3.0))        # before the probe time: dropped, nothing tried
    seen["failed"] = {"failing": spool.failing, "dropped": spool.dropped, "error": spool.last_error,
                      "tried": _names(spool_dir) != files_before}
    for started_at in (4.0, 5.0, 6.0):
        clock.now += 1.1
        spool.append(finished_call(started_at=started_at))  # each probe fails and leaves no file behind
    seen["full"] = {"failing": spool.failing, "dropped": spool.dropped, "recover": spool.recover(),
                    "new_files": _names(spool_dir) != files_before, "error": spool.last_error}
    fsize(resource.RLIM_INFINITY)
    seen["before_probe"] = spool.recover()
    clock.now += 1.1
    seen["after_probe"] = spool.recover()
    spool.append(finished_call(started_at=8.0))        # recorded
    spool.close()
    seen["final"] = {"failing": spool.failing, "dropped": spool.dropped}
    print(json.dumps(seen), flush=True)


def starved(spool_dir: str) -> None:
    # Not even a first file fits: the writer starts failing instead of raising, then recovers.
    clock = Clock()
    fsize(1000)
    spool = SpoolWriter(spool_dir, "w1", file_bytes=1 << 20, clock=clock)
    seen: dict[str, object] = {"failing": spool.failing, "error": spool.last_error}
    spool.append(finished_call(started_at=1.0))        # dropped
    fsize(resource.RLIM_INFINITY)
    clock.now += 1.1
    spool.append(finished_call(started_at=2.0))        # probes, opens a file, records
    spool.close()
    seen["final"] = {"failing": spool.failing, "dropped": spool.dropped}
    print(json.dumps(seen), flush=True)


async def proxy(prefix: str, snapshot_path: str, policy: str) -> None:
    from tollway.config import load_settings
    from tollway.proxy.server import ProxyServer

    settings = load_settings(environ={}, prefix=prefix, billable_spool_failure=policy)
    spool = SpoolWriter(settings.spool_dir, "w1", file_bytes=1)  # a file per call: failures show at once
    server = ProxyServer(settings, spool=spool)
    server.apply(json.loads(Path(snapshot_path).read_text()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    await server.serve(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, fsize, 0)
    loop.add_signal_handler(signal.SIGUSR2, fsize, resource.RLIM_INFINITY)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(sock.getsockname()[1], flush=True)
    await stop.wait()
    await server.drain(1.0)
    spool.close()
    print(json.dumps({"dropped": spool.dropped, "refused": spool.refused, "failing": spool.failing}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2])
    elif sys.argv[1] == "starved":
        starved(sys.argv[2])
    else:
        import uvloop

        uvloop.install()
        asyncio.run(proxy(*sys.argv[2:5]))
