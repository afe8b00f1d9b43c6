"""The configurations under test, behind one interface: set up once, start, load, stop.

- `DirectTarget`: the nginx upstream itself (the ceiling of the machine's loopback).
- `NginxProxyTarget`: nginx `proxy_pass` with a keepalive upstream pool, one worker (the reference).
- `TollwayTarget`: a Tollway node with a plugin profile and a worker count.

Every target is started right before its measurement and stopped right after, so only one
proxy runs at a time and each round starts from the same state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .nginx import NginxServer
from .tollway_node import REQUEST_HEADERS, ROUTE_PATH, TollwayNode, TollwayProfile
from .tools import LOOPBACK


class Target(ABC):
    """A configuration the harness loads: its name, where to send requests, its processes."""

    key: str
    label: str
    kind: str
    workers: int
    path: str = ROUTE_PATH
    headers: dict[str, str] = REQUEST_HEADERS

    @abstractmethod
    def setup(self) -> None:
        """Once, before the first round (create a database, configure through the Admin API...)."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @abstractmethod
    def processes(self) -> dict[str, int]:
        """Role -> pid of the processes that serve this target (for RSS sampling)."""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "kind": self.kind, "workers": self.workers}


class DirectTarget(Target):
    """Straight to the upstream: no proxy at all."""

    kind = "direct"

    def __init__(self, upstream: NginxServer) -> None:
        self.upstream = upstream
        self.key = "direct"
        self.label = "direct to upstream (nginx return 200)"
        self.workers = 1

    def setup(self) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @property
    def port(self) -> int:
        return self.upstream.port

    def processes(self) -> dict[str, int]:
        return self.upstream.processes()


class NginxProxyTarget(Target):
    """nginx `proxy_pass` to the upstream with `keepalive`, worker_processes 1."""

    kind = "nginx"

    def __init__(self, upstream_port: int, directory: Path) -> None:
        self.server = NginxServer.proxy(upstream_port, directory)
        self.key = "nginx-proxy"
        self.label = "nginx proxy_pass (keepalive)"
        self.workers = 1

    def setup(self) -> None:
        pass

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port

    def processes(self) -> dict[str, int]:
        return self.server.processes()


class TollwayTarget(Target):
    """A Tollway node with a plugin profile and N workers, in a fresh prefix of its own."""

    kind = "tollway"

    def __init__(self, profile: TollwayProfile, workers: int, directory: Path, upstream_url: str,
                 log_level: str = "notice") -> None:
        self.profile = profile
        self.workers = workers
        self.upstream_url = upstream_url
        self.key = f"tollway-{profile.slug}-w{workers}"
        self.label = f"Tollway {profile.label}"
        self.node = TollwayNode(directory / self.key, plugins=profile.plugins, workers=workers,
                                log_level=log_level)

    def setup(self) -> None:
        self.node.bootstrap()
        self.node.start()
        try:
            self.node.configure(self.profile, self.upstream_url)
            self.node.wait_until_proxying()
        finally:
            self.node.stop()

    def start(self) -> None:
        self.node.start()
        try:
            self.node.wait_until_proxying()
        except Exception:
            self.node.stop()
            raise

    def stop(self) -> None:
        self.node.stop()

    @property
    def port(self) -> int:
        return self.node.proxy_port

    def processes(self) -> dict[str, int]:
        return self.node.processes()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "plugins": self.profile.plugins}
