"""Closed-loop throughput with wrk: fixed connections and duration, results as JSON from Lua.

wrk's own summary is meant for people; the `done` script below prints one machine-readable line
with the request count, the duration and the latency percentiles in microseconds.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .tools import require_tool

MARKER = "WRK_JSON "

DONE_SCRIPT = """\
-- Prints wrk's results as one JSON line (latencies in microseconds) for the Tollway bench harness.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    "MARKER", summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
""".replace("MARKER", MARKER)


class WrkError(RuntimeError):
    """wrk failed, or printed nothing the harness can read."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (µs) and error counts."""

    requests: int
    duration_s: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    mean_us: float
    max_us: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        """Socket errors, timeouts and responses with a status of 400 or more."""
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


def parse_wrk_output(stdout: str) -> WrkResult:
    """The WrkResult in wrk's output (the line DONE_SCRIPT prints); WrkError when it is missing."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER):])
            except json.JSONDecodeError as exc:
                raise WrkError(f"unreadable wrk result line: {line!r}") from exc
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=int(data["duration_us"]) / 1e6,
                p50_us=int(data["p50_us"]), p90_us=int(data["p90_us"]),
                p99_us=int(data["p99_us"]), p999_us=int(data["p999_us"]),
                mean_us=float(data["mean_us"]), max_us=int(data["max_us"]),
                errors={key: int(value) for key, value in data["errors"].items()},
            )
    raise WrkError(f"wrk printed no result line; its output was:\n{stdout[-2000:]}")


def write_done_script(directory: Path) -> Path:
    path = directory / "wrk_done.lua"
    path.write_text(DONE_SCRIPT)
    return path


def wrk_command(url: str, *, connections: int, threads: int, duration: float, script: Path,
                headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> list[str]:
    """The wrk command line; duration is rounded to whole seconds (at least one), as wrk wants."""
    command = [require_tool("wrk"), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               f"--timeout={max(1, round(timeout))}s", "-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    return command + [url]


def run_wrk(url: str, *, connections: int, threads: int, duration: float, script: Path,
            headers: Mapping[str, str] | None = None) -> WrkResult:
    """Run wrk once against url and return what it measured."""
    if threads > connections:
        threads = connections  # wrk refuses fewer connections than threads
    command = wrk_command(url, connections=connections, threads=threads, duration=duration,
                          script=script, headers=headers)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration + 60:.0f}s") from exc
    if result.returncode != 0:
        raise WrkError(f"wrk exited with {result.returncode}: {result.stderr.strip() or result.stdout[-500:]}")
    return parse_wrk_output(result.stdout)


def key_rotation_script(directory: Path, path: str, keys: list[str]) -> Path:
    """A wrk script whose requests GET `path`, sending each `apikey` of `keys` in turn."""
    script = directory / "keys.lua"
    quoted = ", ".join(f'"{key}"' for key in keys)
    script.write_text(
        f"local keys = {{{quoted}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #keys + 1\n"
        f'  return wrk.format("GET", "{path}", {{["apikey"] = keys[i]}})\nend\n')
    return script


def answered_2xx(output: str) -> int:
    """Responses wrk's plain summary counts, less any that were not 2xx or 3xx."""
    total = re.search(r"(\d+) requests in", output)
    if total is None:
        raise WrkError(f"wrk printed no request count; its output was:\n{output[-2000:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return int(total.group(1)) - (int(non_2xx.group(1)) if non_2xx else 0)
