"""What a benchmark ran on: CPU, cores, kernel, Python, nginx, wrk, and the Tollway commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from .tools import find_tool, tool_version


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path) -> str:
    """`HEAD`'s short hash, with `+dirty` when the work tree has changes; '' outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head + ("+dirty" if head and dirty else "")


def describe_machine(repo: Path) -> dict[str, Any]:
    """A JSON-able description of this machine and of the tools the harness uses."""
    nginx = find_tool("nginx")
    wrk = find_tool("wrk")
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "nginx": tool_version(nginx, "-v").removeprefix("nginx version: ") if nginx else "",
        "wrk": tool_version(wrk, "--version").split(" [")[0] if wrk else "",
        "tollway_commit": git_commit(repo),
    }


def machine_line(machine: dict[str, Any]) -> str:
    """One line for the Markdown report."""
    return (f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
            f"{machine['kernel']}, {machine['python']}, {machine['nginx']}, {machine['wrk']}, "
            f"Tollway {machine['tollway_commit'] or 'unknown commit'}")
