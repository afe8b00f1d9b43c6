"""`tollway quickstart` (what ./scripts/run.sh runs) tells the seed's story and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_settings
from tests.server.nodes import node_env


def test_quickstart_sets_up_the_seed_reports_usage_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite", workers="1")
    proc = subprocess.Popen([sys.executable, "-m", "tollway", "quickstart"], env=node_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Try next"):
                break
        output = "\n".join(lines)
        assert "7 calls with apikey poppy-secret  -> " + " ".join(["200"] * 7) in output, output
        assert "3 calls with apikey (none)" in output and "401 401 401" in output
        report = [line.split() for line in lines if "  mock  " in line]
        tally = {(row[1], row[4]): int(row[5]) for row in report}
        assert tally == {("poppy", "200"): 7, ("digit", "200"): 4, ("-", "401"): 3}, output
        # plan starter: the first 5 calls of the period free, then 0.01 USD each
        assert "  poppy  7 requests = 0.02; total 0.02 USD" in lines, output
        assert "  digit  4 requests = 0.00; total 0.00 USD" in lines, output
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole group
        code = proc.wait(timeout=60)
    assert code == 0
    assert not (Path(settings.prefix) / "tollway.pid").exists()


def test_quickstart_stops_its_gateway_when_it_is_terminated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite", workers="1")
    proc = subprocess.Popen([sys.executable, "-m", "tollway", "quickstart", "--no-traffic"], env=node_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("Try next"):
            break
    proc.terminate()  # SIGTERM to the quickstart alone, not its group
    assert proc.wait(timeout=60) == 0
    pid_file = Path(settings.prefix) / "tollway.pid"
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_file.exists()
