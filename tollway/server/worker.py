"""A proxy worker process: `python -m tollway.server.worker LISTEN_FD CONTROL_FD WRITER_ID`.

Spawned fresh by the master (never forked from it), so it imports only the proxy, the plugin
handlers and the spool writer: no database driver, a small resident set. It serves the inherited
listening socket with the configuration the master pushes, and exits after draining when the
master says so, when it gets SIGTERM, or when the master goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvloop

from tollway.config import Settings
from tollway.counters import SharedCounters
from tollway.metering.spool import SpoolWriter
from tollway.proxy.chain import handler_class
from tollway.proxy.server import ProxyServer
from tollway.server.control import Channel

log = logging.getLogger("tollway.worker")

STATS_INTERVAL = 1.0


class Worker:
    def __init__(self, listen_sock: socket.socket, control_sock: socket.socket, writer_id: str) -> None:
        self.listen_sock = listen_sock
        self.control_sock = control_sock
        self.writer_id = writer_id
        self.proxy: ProxyServer | None = None
        self.spool: SpoolWriter | None = None
        self.settings: Settings | None = None
        self.counters: SharedCounters | None = None  # the node's, created by the master
        # Plugins' reports to the master, by name: each gives what it counted since its last call, or None
        self.reports: dict[str, Callable[[], Any]] = {}
        self.stopping = asyncio.Event()
        self.drain_timeout = 30.0
        self.exit_code = 0

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # the master decides on Ctrl-C
        channel = await Channel.open(self.control_sock)
        listener = asyncio.create_task(self._listen(channel))
        listener.add_done_callback(self._listener_done)
        reporter = asyncio.create_task(self._report(channel))
        await self.stopping.wait()
        listener.cancel()
        reporter.cancel()
        if self.proxy is not None:
            await self.proxy.drain(self.drain_timeout)
        if self.spool is not None:
            self.spool.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send_reports(channel)
            await channel.send({"type": "stats", "stats": self._stats()})  # the last word: nothing is lost at a reload
        channel.close()
        return self.exit_code

    def _init_plugins(self, settings: Settings) -> None:
        """Each enabled plugin's init_worker, once, before the worker serves (tollway.plugins.node)."""
        for name in settings.enabled_plugins:
            handler = handler_class(name)
            if handler is not None:
                handler.init_worker(self)

    def _listener_done(self, task: asyncio.Task[None]) -> None:
        """A listener that failed leaves the worker deaf to its master: log why and exit, so the
        master restarts it, rather than live on unconfigured."""
        if not task.cancelled() and task.exception() is not None:
            log.error("worker %d: applying the configuration failed; exiting", os.getpid(),
                      exc_info=task.exception())
            self.exit_code = 1
            self.stopping.set()

    async def _listen(self, channel: Channel) -> None:
        while True:
            message = await channel.receive()
            if message is None:
                log.warning("worker %d: the master went away; draining", os.getpid())
                break
            kind = message.get("type")
            if kind == "config":
                await self._apply(message)
                await channel.send({"type": "applied", "version": message["snapshot"].get("version")})
            elif kind == "drain":
                break
        self.stopping.set()

    async def _report(self, channel: Channel) -> None:
        """Send the proxy's counters to the master every second, for GET /status, and the plugins' reports."""
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            if self.proxy is not None:
                try:
                    await self._send_reports(channel)
                    await channel.send({"type": "stats", "stats": self._stats()})
                except (ConnectionError, RuntimeError):
                    return

    async def _send_reports(self, channel: Channel) -> None:
        for name, take in self.reports.items():
            try:
                data = take()
            except Exception:
                log.exception("worker %d: the report %r failed", os.getpid(), name)
                continue
            if data is not None:
                await channel.send({"type": "report", "name": name, "data": data})

    def _stats(self) -> dict[str, int | bool]:
        stats: dict[str, int | bool] = dict(self.proxy.stats) if self.proxy is not None else {}
        if self.spool is not None:
            stats["spool_dropped"] = self.spool.dropped
            stats["spool_refused"] = self.spool.refused
            stats["spool_failing"] = bool(self.spool.failing)
        return stats

    async def _apply(self, message: dict) -> None:  # type: ignore[type-arg]
        settings = Settings.from_dict(message["settings"])
        if self.proxy is None:
            logging.getLogger().setLevel(settings.log_level.upper())
            self.drain_timeout = settings.drain_timeout
            # Opened by the first call it records (or by a plugin's init_worker, to know it works).
            self.spool = SpoolWriter(settings.spool_dir, self.writer_id, open_now=False)
            self.counters = SharedCounters(settings.shared_counters_path, settings.shared_counters_slots)
            self.settings = settings
            self._init_plugins(settings)
            self.proxy = ProxyServer(settings, spool=self.spool)
            self.proxy.apply(message["snapshot"])
            await self.proxy.serve(self.listen_sock)
        else:
            self.proxy.apply(message["snapshot"])


def main(argv: list[str]) -> int:
    listen_fd, control_fd, writer_id = int(argv[0]), int(argv[1]), argv[2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [worker %(process)d] %(levelname)s %(message)s")
    listen_sock = socket.socket(fileno=listen_fd)
    control_sock = socket.socket(fileno=control_fd)
    uvloop.install()
    return asyncio.run(Worker(listen_sock, control_sock, writer_id).run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
