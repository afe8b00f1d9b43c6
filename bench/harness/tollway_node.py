"""A Tollway node for the bench: its own prefix (SQLite), the `tollway` CLI, and the Admin API.

It is configured as in the seed: a service pointing at the upstream, a route `paths[]=/bench`,
and, depending on the profile, key-auth on the route with a consumer and its key, and the
global billable plugin. Every request of the bench carries the `apikey` header.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from .tools import LOOPBACK, free_port

ROUTE_PATH = "/bench"
CONSUMER = "bench"
API_KEY = "bench-key"
REQUEST_HEADERS = {"apikey": API_KEY}


class NodeFailed(RuntimeError):
    """The node did not bootstrap, start, accept its configuration, or proxy."""


@dataclass(frozen=True)
class TollwayProfile:
    """Which plugins a Tollway configuration enables (TOLLWAY_PLUGINS) and configures."""

    slug: str
    label: str
    key_auth: bool
    billable: bool
    rate_limiting: str | None = None  # the rate-limiting policy (local, redis, cluster), or None for none

    @property
    def plugins(self) -> str:
        names = [name for name, on in (("key-auth", self.key_auth), ("billable", self.billable),
                                       ("rate-limiting", self.rate_limiting is not None)) if on]
        return ",".join(names) or "off"


PROFILES = (
    TollwayProfile("plain", "no plugins", key_auth=False, billable=False),
    TollwayProfile("keyauth", "key-auth", key_auth=True, billable=False),
    TollwayProfile("keyauth-billable", "key-auth + billable", key_auth=True, billable=True),
    # a limit no bench reaches: every call is counted, none refused
    TollwayProfile("keyauth-billable-ratelimit-local", "key-auth + billable + rate-limiting (local)",
                   key_auth=True, billable=True, rate_limiting="local"),
    TollwayProfile("keyauth-billable-ratelimit-redis", "key-auth + billable + rate-limiting (redis)",
                   key_auth=True, billable=True, rate_limiting="redis"),
    # the node's database (SQLite in the bench) through its master: one transaction per batch
    TollwayProfile("keyauth-billable-ratelimit-cluster", "key-auth + billable + rate-limiting (cluster)",
                   key_auth=True, billable=True, rate_limiting="cluster"),
)
# The Redis of the redis policy's profile (the machine's own, as the tests' REDIS_URL)
BENCH_REDIS = os.environ.get("BENCH_REDIS", "127.0.0.1:6379")
RATE_LIMIT = "1000000000000"


def _admin_steps(profile: TollwayProfile, upstream_url: str) -> list[tuple[str, str, dict[str, str]]]:
    """The Admin API calls that configure a node for this profile, in the seed's order."""
    steps = [
        ("PUT", "/services/bench", {"url": upstream_url}),
        ("POST", "/services/bench/routes", {"name": "bench", "paths[]": ROUTE_PATH}),
    ]
    if profile.key_auth:
        steps += [
            ("POST", "/routes/bench/plugins", {"name": "key-auth"}),
            ("PUT", f"/consumers/{CONSUMER}", {}),
            ("POST", f"/consumers/{CONSUMER}/key-auth", {"key": API_KEY}),
        ]
    if profile.billable:
        steps.append(("POST", "/plugins", {"name": "billable"}))
    if profile.rate_limiting is not None:
        limit = {"name": "rate-limiting", "config.second": RATE_LIMIT, "config.hour": RATE_LIMIT,
                 "config.policy": profile.rate_limiting}
        if profile.rate_limiting == "redis":
            host, _, port = BENCH_REDIS.rpartition(":")
            limit.update({"config.redis.host": host, "config.redis.port": port})
        steps.append(("POST", "/routes/bench/plugins", limit))
    return steps


def _request(port: int, method: str, path: str, form: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        all_headers = dict(headers or {})
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class TollwayNode:
    """One node in `prefix`; ports are chosen afresh at every start (the database keeps the rest)."""

    def __init__(self, prefix: Path, *, plugins: str, workers: int, log_level: str = "notice") -> None:
        self.prefix = Path(prefix)
        self.plugins = plugins
        self.workers = workers
        self.log_level = log_level
        self.proxy_port = free_port()
        self.admin_port = free_port()

    def env(self) -> dict[str, str]:
        """The environment that gives a `tollway` command this node's settings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLWAY_")}
        env.update({
            "TOLLWAY_PREFIX": str(self.prefix),
            "TOLLWAY_DATABASE": "sqlite",
            "TOLLWAY_PROXY_LISTEN": f"{LOOPBACK}:{self.proxy_port}",
            "TOLLWAY_ADMIN_LISTEN": f"{LOOPBACK}:{self.admin_port}",
            "TOLLWAY_WORKERS": str(self.workers),
            "TOLLWAY_PLUGINS": self.plugins,
            "TOLLWAY_LOG_LEVEL": self.log_level,
        })
        return env

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `tollway ARGS` with this node's settings."""
        return subprocess.run([sys.executable, "-m", "tollway", *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise NodeFailed(f"tollway {what} failed ({result.returncode}): {detail}\n{self.log_tail()}")

    def bootstrap(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self._check(self.cli("migrations", "bootstrap"), "migrations bootstrap")

    def start(self) -> None:
        """`tollway migrations up`, then `tollway start --daemon`: returns once the Admin API answers.

        Migrations run at every start because the code under test may have gained one since the
        prefix was bootstrapped (a node refuses to start with pending migrations).
        """
        self._check(self.cli("migrations", "up"), "migrations up")
        self.proxy_port = free_port()
        self.admin_port = free_port()
        self._check(self.cli("start", "--daemon", timeout=90), "start --daemon")

    def stop(self) -> None:
        """`tollway stop`; a node that does not stop in time is killed (its master and workers)."""
        if self.master_pid() is None:
            return
        result = self.cli("stop", "--timeout", "60", timeout=90)
        if result.returncode != 0 and self.master_pid() is not None:
            self.kill()
            raise NodeFailed(f"tollway stop failed, node killed: {(result.stderr or result.stdout).strip()}")

    def kill(self) -> None:
        pids = list(self.processes().values())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)

    def master_pid(self) -> int | None:
        try:
            pid = int((self.prefix / "tollway.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def processes(self) -> dict[str, int]:
        """Role -> pid for RSS sampling: the master and every worker."""
        master = self.master_pid()
        if master is None:
            return {}
        roles = {"master": master}
        try:
            children = psutil.Process(master).children()
        except psutil.NoSuchProcess:
            return {}
        number = 0
        for child in children:
            try:
                if "tollway.server.worker" in " ".join(child.cmdline()):
                    number += 1
                    roles[f"worker {number}"] = child.pid
            except psutil.NoSuchProcess:
                continue
        return roles

    def configure(self, profile: TollwayProfile, upstream_url: str) -> None:
        """Create the service, route, consumer, key and plugins through the Admin API."""
        for method, path, form in _admin_steps(profile, upstream_url):
            status, body = _request(self.admin_port, method, path, form)
            if status not in (200, 201):
                raise NodeFailed(f"{method} {path} answered {status}: {body[:300]!r}")

    def wait_until_proxying(self, timeout: float = 20.0) -> None:
        """Return once GET /bench with the key answers 200 through the proxy."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status, body = _request(self.proxy_port, "GET", ROUTE_PATH, headers=REQUEST_HEADERS, timeout=2)
                if status == 200:
                    return
                last = f"status {status}: {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise NodeFailed(f"the proxy did not answer 200 on {ROUTE_PATH} within {timeout}s ({last})\n"
                         f"{self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        path = self.prefix / "logs" / "tollway.log"
        try:
            return path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
