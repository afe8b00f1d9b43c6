"""A real Tollway node for end-to-end tests: `tollway start` in a subprocess, steered over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tollway.config import SETTINGS, Settings


def node_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a `tollway` command these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")}
    for key in SETTINGS:
        env["TOLLWAY_" + key.upper()] = str(getattr(settings, key))
    env.update(extra)
    return env


def tollway(settings: Settings, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tollway", *args], env=dict(env or node_env(settings)),
                          capture_output=True, text=True, timeout=timeout)


class Node:
    def __init__(self, settings: Settings, **env: str) -> None:
        self.settings = settings
        self.env = node_env(settings, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(settings.prefix) / "test-node.log"
        self.admin = f"http://{settings.admin_listen}"
        self.proxy = f"http://{settings.proxy_listen}"

    def bootstrap(self) -> None:
        result = tollway(self.settings, "migrations", "bootstrap", env=self.env)
        assert result.returncode == 0, result.stderr

    def start(self, timeout: float = 30) -> Node:
        Path(self.settings.prefix).mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tollway", "start"], env=self.env,
                                    stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.admin + "/status", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"node not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill_all(self) -> None:
        """kill -9 of the master and every worker, as a crash would."""
        assert self.proc is not None
        pids = [self.proc.pid] + self.worker_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def worker_pids(self) -> list[int]:
        import psutil

        assert self.proc is not None
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children()
                    if "tollway.server.worker" in " ".join(c.cmdline())]
        except psutil.NoSuchProcess:
            return []

    def post(self, path: str, **data: Any) -> httpx.Response:
        return httpx.post(self.admin + path, data=data, timeout=10)

    def json(self, path: str) -> Any:
        response = httpx.get(self.admin + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_until(self, predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not met within {timeout}s\n{self.log()}")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            workers = self.worker_pids()
            self.proc.kill()
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Node]:
    """A node on `settings`, bootstrapped and started; closed after."""
    node = Node(settings)
    node.bootstrap()
    node.start()
    try:
        yield node
    finally:
        node.close()
