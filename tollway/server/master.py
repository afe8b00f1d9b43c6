"""The master process of a node: Admin API, configuration, metering flush and the workers.

It owns every database connection of the node. Workers get their configuration as a snapshot
over the control channel and write usage only to their spool files; the master's flusher turns
those into ledger rows, on a thread of its own that yields the CPU to the workers. Signals:
SIGTERM/SIGINT/SIGQUIT stop gracefully, SIGHUP reloads with the settings a `tollway reload` left in
PREFIX/reload.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import uvicorn

from tollway.config import Settings
from tollway.counters import SharedCounters
from tollway.errors import ConfigError, NodeError, StoreError
from tollway.plugins import registry
from tollway.proxy.access_log import open_file
from tollway.server import node
from tollway.server.admin_listener import Limits, bounded_protocol
from tollway.server.control import Channel

if TYPE_CHECKING:
    from tollway.plugins.node import NodeService

log = logging.getLogger("tollway.master")

WORKER_READY_TIMEOUT = 30.0
RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)
FINAL_STATS_WAIT = 2.0  # seconds a drained worker's last stats may take to arrive
# Worker counters that only grow: kept by the master when a worker goes (a reload, a crash), so
# that GET /status counts from the node's start.
CUMULATIVE = ("connections_accepted", "connections_refused", "requests_total", "requests_rejected", "timeouts",
              "spool_dropped", "spool_refused")


class AdminServer(uvicorn.Server):
    """uvicorn serving the Admin API on the master's loop; the master owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class WorkerHandle:
    slot: int
    writer_id: str
    process: asyncio.subprocess.Process
    channel: Channel
    settings: Settings
    draining: bool = False
    applied_version: int | None = None
    restarts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    totals_kept: bool = False  # its counters were added to the master's gone_totals
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def bind(listen: str, what: str) -> socket.socket:
    """A listening TCP socket for HOST:PORT, or NodeError saying clearly why not."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == 98 else (exc.strerror or str(exc))
        raise NodeError(f"cannot listen on {listen} ({what}): {reason}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_tls_files(settings: Settings) -> None:
    """A certificate or key that cannot be loaded is a ConfigError now, not a worker crash later."""
    for listener, cert, key in (("proxy", settings.proxy_ssl_cert, settings.proxy_ssl_cert_key),
                                ("admin", settings.admin_ssl_cert, settings.admin_ssl_cert_key)):
        if bool(cert) != bool(key):
            raise ConfigError(f"{listener}_ssl_cert and {listener}_ssl_cert_key must be set together")
        if cert:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load {listener}_ssl_cert {cert} with its key {key}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from exc


def check_access_log(settings: Settings) -> None:
    """An access log file that cannot be opened is a ConfigError now, not workers that die."""
    path = settings.access_log_file
    if path is not None:
        os.close(open_file(str(path))[0])


class Master:
    def __init__(self, settings: Settings) -> None:
        # Node-wide state
        self.settings = settings
        self.node_id = node.node_id(settings)
        self.started_at = time.time()
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.config_dirty = asyncio.Event()
        # Resources, set in run()
        self.db: Any = None
        self.proxy_sock: socket.socket | None = None
        self.admin_sock: socket.socket | None = None
        self.admin_server: AdminServer | None = None
        self.admin_app: Callable[..., Any] | None = None
        self.status_sock: socket.socket | None = None  # status_listen's, when it is not off
        self.status_server: AdminServer | None = None
        self.status_app: Callable[..., Any] | None = None
        self.counters: SharedCounters | None = None  # created here, mapped by every worker
        # Workers and the configuration they hold
        self.workers: dict[int, WorkerHandle] = {}
        self.retired: list[WorkerHandle] = []
        self.gone_totals: dict[str, int] = dict.fromkeys(CUMULATIVE, 0)  # of workers no longer running
        # Every worker process this master started, by spool writer id; kept after they exit.
        self.writers: dict[str, asyncio.subprocess.Process] = {}
        self.snapshot: dict[str, Any] = {}
        self.config_version: int | None = None
        # Node services (tollway.plugins.node): the ledger's flusher, and those of enabled plugins
        self.services: dict[str, list[NodeService]] = {}  # by owner: "core" or a plugin's name
        self.report_listeners: dict[str, Callable[[Any], None]] = {}  # workers' reports, by name (on_report)

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> int:
        from tollway.store import migrations
        from tollway.store.db import Database

        check_tls_files(self.settings)
        check_access_log(self.settings)
        self.db = Database.from_settings(self.settings)
        try:
            await migrations.ensure_bootstrapped(self.db, self.settings)
            self.proxy_sock = bind(self.settings.proxy_listen, "proxy_listen")
            self.admin_sock = bind(self.settings.admin_listen, "admin_listen")
            if self.settings.status_listen != "off":
                self.status_sock = bind(self.settings.status_listen, "status_listen")
            self.snapshot = await self._load_snapshot()
            self.counters = SharedCounters(self.settings.shared_counters_path, self.settings.shared_counters_slots,
                                           create=True)
        except BaseException:
            await self.db.dispose()
            self._close_sockets()
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        node.write_pid(self.settings)
        try:
            for slot in range(self.settings.workers):
                await self._spawn(slot, self.settings)
            self._start_admin()
            await self._start_services(self.settings)
            background = [
                asyncio.create_task(self._config_loop(), name="config"),
                asyncio.create_task(self._poll_loop(), name="poll"),
                asyncio.create_task(self._reload_loop(), name="reload"),
            ]
            log.info("tollway %s started: proxy on %s, admin on %s, status on %s, %d worker(s), prefix %s",
                     node.version(), self.settings.proxy_listen, self.settings.admin_listen,
                     self.settings.status_listen, self.settings.workers, self.settings.prefix)
            await self.stopping.wait()
            log.info("stopping: draining workers")
            for task in background:
                task.cancel()
            await self._shutdown()
        finally:
            node.remove_pid(self.settings)
            self._close_sockets()
            if self.counters is not None:
                self.counters.close()
            await self.db.dispose()
        log.info("stopped")
        return 0

    def _on_stop_signal(self, sig: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self.stopping.set()

    async def _shutdown(self) -> None:
        for server in (self.admin_server, self.status_server):
            if server is not None:
                server.should_exit = True
        everyone = list(self.workers.values()) + self.retired
        await asyncio.gather(*(self._drain(handle) for handle in everyone))
        for task in (self.admin_task, self.status_task):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
        await self._stop_services(list(self.services))

    def _close_sockets(self) -> None:
        for sock in (self.proxy_sock, self.admin_sock, self.status_sock):
            if sock is not None:
                sock.close()

    # -- workers ---------------------------------------------------------------------------

    async def _spawn(self, slot: int, settings: Settings, restarts: int = 0) -> WorkerHandle:
        assert self.proxy_sock is not None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        writer_id = f"{self.node_id[:8]}-{slot}-{uuid.uuid4().hex[:12]}"
        # -P: the current directory stays off the worker's sys.path (a `tollway/` folder there, a
        # clone's, is not this package).
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "tollway.server.worker",
            str(self.proxy_sock.fileno()), str(child.fileno()), writer_id,
            pass_fds=(self.proxy_sock.fileno(), child.fileno()),
        )
        child.close()
        self.writers[writer_id] = process
        channel = await Channel.open(parent)
        handle = WorkerHandle(slot, writer_id, process, channel, settings, restarts=restarts)
        await channel.send({"type": "config", "settings": settings.to_dict(), "snapshot": self.snapshot})
        reply = await asyncio.wait_for(channel.receive(), WORKER_READY_TIMEOUT)
        if reply is None:
            raise NodeError(f"worker {process.pid} exited before it was ready; see the log above")
        handle.applied_version = reply.get("version")
        handle.tasks.append(asyncio.create_task(self._listen(handle)))
        handle.tasks.append(asyncio.create_task(self._watch(handle)))
        self.workers[slot] = handle
        log.info("worker %d started (slot %d)", process.pid, slot)
        return handle

    async def _listen(self, handle: WorkerHandle) -> None:
        while (message := await handle.channel.receive()) is not None:
            if message.get("type") == "applied":
                handle.applied_version = message.get("version")
            elif message.get("type") == "stats":
                handle.stats = message.get("stats") or {}
            elif message.get("type") == "report":
                self._hand_report(message)

    def _hand_report(self, message: dict[str, Any]) -> None:
        listener = self.report_listeners.get(message.get("name") or "")
        if listener is None:
            return  # no service wants it (its plugin was disabled by a reload): dropped
        try:
            listener(message.get("data"))
        except Exception:
            log.exception("the listener of worker reports %r failed", message.get("name"))

    def on_report(self, name: str, callback: Callable[[Any], None] | None) -> None:
        """Hand every worker report of that name to callback(data); None stops (tollway.plugins.node)."""
        if callback is None:
            self.report_listeners.pop(name, None)
        else:
            self.report_listeners[name] = callback

    async def _watch(self, handle: WorkerHandle) -> None:
        code = await handle.process.wait()
        if handle.draining or self.stopping.is_set():
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        log.error("worker %d (slot %d) died with %s; restarting it", handle.process.pid, handle.slot, how)
        self._keep_totals(handle)
        handle.channel.close()
        await asyncio.sleep(RESTART_BACKOFF[min(handle.restarts, len(RESTART_BACKOFF) - 1)])
        if self.stopping.is_set() or self.workers.get(handle.slot) is not handle:
            return
        try:
            await self._spawn(handle.slot, handle.settings, restarts=handle.restarts + 1)
        except Exception:
            log.exception("could not restart worker slot %d", handle.slot)

    async def _drain(self, handle: WorkerHandle) -> None:
        handle.draining = True
        if handle.process.returncode is None:
            with contextlib.suppress(Exception):
                await handle.channel.send({"type": "drain"})
            try:
                await asyncio.wait_for(handle.process.wait(), handle.settings.drain_timeout + 5)
            except TimeoutError:
                log.warning("worker %d did not drain in time; killing it", handle.process.pid)
                handle.process.kill()
                await handle.process.wait()
        listener = handle.tasks[0] if handle.tasks else None
        if listener is not None:  # it ends at the channel's end, after the worker's last stats
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(listener), FINAL_STATS_WAIT)
        self._keep_totals(handle)
        handle.channel.close()
        for task in handle.tasks:
            task.cancel()

    def _keep_totals(self, handle: WorkerHandle) -> None:
        """Add a worker's last counters to those of the workers gone (once per worker)."""
        if handle.totals_kept:
            return
        for key in CUMULATIVE:
            self.gone_totals[key] += int(handle.stats.get(key) or 0)
        handle.totals_kept = True

    def writer_alive(self, writer_id: str) -> bool:
        """Whether a spool writer is a worker still running (its files may still grow).

        Writers of earlier runs are unknown here and finished: their process is gone.
        """
        process = self.writers.get(writer_id)
        return process is not None and process.returncode is None

    # -- configuration ---------------------------------------------------------------------

    async def _load_snapshot(self) -> dict[str, Any]:
        from tollway.store.snapshot import load_snapshot

        snapshot = await load_snapshot(self.db, self.settings)
        self.config_version = snapshot.get("version")
        return snapshot  # type: ignore[no-any-return]

    async def _config_loop(self) -> None:
        """Reload the snapshot when it changed and push it to every worker."""
        while True:
            await self.config_dirty.wait()
            await asyncio.sleep(0.02)  # let a burst of Admin API writes land as one push
            self.config_dirty.clear()
            try:
                self.snapshot = await self._load_snapshot()
            except StoreError as exc:
                log.warning("configuration not reloaded: %s; workers keep the last one", exc)
                continue
            except Exception:
                log.exception("configuration not reloaded; workers keep the last one")
                continue
            message = {"type": "config", "snapshot": self.snapshot}
            for handle in list(self.workers.values()):
                message["settings"] = handle.settings.to_dict()
                with contextlib.suppress(Exception):
                    await handle.channel.send(message)

    async def _poll_loop(self) -> None:
        """Notice configuration written by other nodes sharing the database."""
        from tollway.store.version import config_version

        failing = False
        while True:
            await asyncio.sleep(self.settings.db_update_frequency)
            try:
                version = await config_version(self.db)
            except Exception as exc:
                if not failing:
                    log.warning("database unreachable (%s); proxying goes on with the last configuration", exc)
                failing = True
                continue
            if failing:
                log.warning("database reachable again")
                failing = False
            if version != self.config_version:
                self.config_dirty.set()

    # -- Admin API and metering ------------------------------------------------------------

    admin_task: asyncio.Task[Any] | None = None
    status_task: asyncio.Task[Any] | None = None

    def _build_admin_app(self, settings: Settings) -> Callable[..., Any]:
        from tollway.admin.app import create_app

        return create_app(settings, self.db, on_change=self.config_dirty.set, status_extra=self.status)  # type: ignore[no-any-return]

    def _build_status_app(self, settings: Settings) -> Callable[..., Any]:
        from tollway.admin.status_app import create_status_app

        return create_status_app(settings, self.db, status_extra=self.status)

    def _start_admin(self) -> None:
        assert self.admin_sock is not None
        self.admin_app = self._build_admin_app(self.settings)

        async def dispatch(scope: Any, receive: Any, send: Any) -> None:
            # One indirection so that a reload swaps the app in one assignment.
            assert self.admin_app is not None
            await self.admin_app(scope, receive, send)

        tls: dict[str, Any] = {}
        if self.settings.admin_ssl_cert and self.settings.admin_ssl_cert_key:
            tls = {"ssl_certfile": self.settings.admin_ssl_cert, "ssl_keyfile": self.settings.admin_ssl_cert_key}
        self.admin_server = self._server(dispatch, tls)
        self.admin_task = asyncio.create_task(self.admin_server.serve(sockets=[self.admin_sock]))
        if self.status_sock is not None:
            self.status_app = self._build_status_app(self.settings)

            async def dispatch_status(scope: Any, receive: Any, send: Any) -> None:
                assert self.status_app is not None
                await self.status_app(scope, receive, send)

            self.status_server = self._server(dispatch_status, {})
            self.status_task = asyncio.create_task(self.status_server.serve(sockets=[self.status_sock]))

    def _server(self, app: Callable[..., Any], tls: dict[str, Any]) -> AdminServer:
        """uvicorn on the master's loop, with the Admin API's bounds (admin_listener.Limits)."""
        limits = Limits.for_process(self.settings)
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                                timeout_graceful_shutdown=5, http=bounded_protocol(limits),
                                timeout_keep_alive=int(self.settings.admin_keepalive_timeout) or 1, **tls)
        return AdminServer(config)

    @staticmethod
    def _service_modules(settings: Settings) -> dict[str, ModuleType]:
        """Owner -> the module whose services(node) it runs: the core's, then each enabled plugin's."""
        return dict(registry.parts(settings.enabled_plugins, "services"))

    async def _start_services(self, settings: Settings) -> None:
        """Start the services of owners that have none running (at start, and for plugins a reload enabled)."""
        for owner, module in self._service_modules(settings).items():
            if owner in self.services:
                continue
            started: list[NodeService] = []
            for service in module.services(self):
                await service.start()
                started.append(service)
            self.services[owner] = started

    async def _stop_services(self, owners: list[str]) -> None:
        for owner in owners:
            for service in reversed(self.services.pop(owner, [])):
                try:
                    await service.stop()
                except Exception:
                    log.exception("service %s of %s did not stop cleanly", service.name, owner)

    def status(self) -> dict[str, Any]:
        """Node figures for GET /status: Kong's `server` counters summed over the workers, and ours."""
        workers = list(self.workers.values())
        running = [h for h in workers + self.retired if not h.totals_kept]

        def total(key: str) -> int:
            return self.gone_totals.get(key, 0) + sum(int(h.stats.get(key) or 0) for h in running)

        active = sum(int(h.stats.get("connections_active") or 0) for h in running)
        return {
            "server": {
                "connections_accepted": total("connections_accepted"),
                "connections_active": active,
                "connections_handled": total("connections_accepted"),
                "total_requests": total("requests_total"),
            },
            "node_id": self.node_id,
            "workers": [
                {"pid": h.process.pid, "slot": h.slot, "config_version": h.applied_version,
                 "requests_total": h.stats.get("requests_total", 0),
                 "spool_dropped": h.stats.get("spool_dropped", 0),
                 "spool_refused": h.stats.get("spool_refused", 0),
                 "spool_failing": h.stats.get("spool_failing", False),
                 "access_log_dropped": h.stats.get("access_log_dropped", 0)}
                for h in workers
            ],
            "config_version": self.config_version,
            "uptime_seconds": int(time.time() - self.started_at),
            **self._services_status(),
        }

    def _services_status(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for services in self.services.values():
            for service in services:
                try:
                    figures = service.status()
                except Exception:
                    log.exception("status of service %s failed", service.name)
                    continue
                if figures is not None:
                    found[service.name] = figures
        return found

    # -- reload ----------------------------------------------------------------------------

    async def _reload_loop(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            request = node.read_reload_request(self.settings)
            try:
                await self._reload(request)
            except Exception as exc:
                log.exception("reload failed")
                node.write_reload_status(self.settings, request, ok=False, message=str(exc))
            else:
                node.write_reload_status(self.settings, request, ok=True, message="reloaded")

    async def _reload(self, request: dict[str, Any] | None) -> None:
        new = Settings.from_dict(request["settings"]) if request else self.settings
        fixed = [key for key in ("prefix", "proxy_listen", "admin_listen", "status_listen", "database", "sqlite_path",
                                 "pg_host", "pg_port", "pg_database", "pg_schema")
                 if getattr(new, key) != getattr(self.settings, key)]
        if fixed:
            log.warning("reload: %s changed; they take effect at the next start", ", ".join(fixed))
            new = new.with_overrides(**{key: getattr(self.settings, key) for key in fixed})
        from tollway.store import migrations

        check_access_log(new)
        await migrations.ensure_up_to_date(self.db, new)  # before anything changes: tables of new plugins
        log.info("reloading: plugins=%s workers=%d", new.plugins, new.workers)
        self.settings = new
        self.snapshot = await self._load_snapshot()
        self.admin_app = self._build_admin_app(new)
        if self.status_sock is not None:
            self.status_app = self._build_status_app(new)
        # New workers first, then the old ones drain: no connection is refused in between.
        old = list(self.workers.values())
        self.workers = {}
        for slot in range(new.workers):
            await self._spawn(slot, new)
        self.retired.extend(old)
        await asyncio.gather(*(self._drain(handle) for handle in old))
        self.retired = [h for h in self.retired if h not in old]
        owners = self._service_modules(new)
        await self._stop_services([owner for owner in self.services if owner not in owners])
        await self._start_services(new)


def run_master(settings: Settings) -> int:
    import uvloop

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s [%(name)s %(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    os.makedirs(settings.prefix, exist_ok=True)
    uvloop.install()
    return asyncio.run(Master(settings).run())

