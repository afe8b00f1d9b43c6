"""External tools the harness drives (nginx, wrk), loopback ports, and waiting for a listener."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ToolMissing(RuntimeError):
    """A program the harness needs (nginx, wrk) is not installed."""


def find_tool(name: str) -> str | None:
    """The path of an executable, looking in the sbin directories too, or None."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file():
            return str(candidate)
    return None


def require_tool(name: str) -> str:
    """The path of an executable; raises ToolMissing with the install command when absent."""
    path = find_tool(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed (Debian: apt-get install -y {name})")
    return path


def missing_tools(*names: str) -> list[str]:
    return [name for name in names if find_tool(name) is None]


def tool_version(*command: str) -> str:
    """The first line a `--version`-style command prints (nginx prints on stderr), or ''."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def free_port() -> int:
    """A TCP port nothing listens on right now, on the loopback address."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float = 10.0, host: str = LOOPBACK) -> None:
    """Return once something accepts connections on host:port; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
