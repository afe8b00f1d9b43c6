"""The quickstart run twice on one prefix, and the commands it prints tried in another shell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_settings
from tests.server.nodes import node_env
from tollway.config import Settings


def quickstart_until_try_next(settings: Settings) -> tuple[subprocess.Popen[str], list[str]]:
    """A running quickstart and what it printed, down to its last command to try."""
    proc = subprocess.Popen([sys.executable, "-m", "tollway", "quickstart"], env=node_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].endswith(" health"):
        line = proc.stdout.readline()
        assert line, "\n".join(lines)
        lines.append(line.rstrip("\n"))
    return proc, lines


def stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
    assert proc.wait(timeout=60) == 0


def tally(lines: list[str]) -> dict[tuple[str, str], int]:
    """(consumer, status) -> calls, from the report the quickstart printed."""
    rows = [line.split() for line in lines if "  mock  " in line]
    return {(row[1], row[4]): int(row[5]) for row in rows}


def test_a_second_quickstart_keeps_what_the_first_made_and_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite", workers="1")
    first, lines = quickstart_until_try_next(settings)
    stop(first)
    assert [line.split(None, 3)[3] for line in lines if line.startswith(("  POST ", "  PUT "))] == ["created"] * 14
    assert tally(lines) == {("poppy", "200"): 7, ("digit", "200"): 4, ("-", "401"): 3}, "\n".join(lines)
    second, lines = quickstart_until_try_next(settings)
    stop(second)
    output = "\n".join(lines)
    answers = [line.split(None, 3)[2:] for line in lines if line.startswith(("  POST ", "  PUT "))]
    assert len(answers) == 14, output
    assert all(words.startswith("already there, from an earlier quickstart") for _, words in answers), output
    assert [words for _, words in answers if not words.endswith("quickstart")] == [
        "already there, from an earlier quickstart, updated"], output  # the mock service's new address
    assert tally(lines) == {("poppy", "200"): 14, ("digit", "200"): 8, ("-", "401"): 6}, output


def test_the_commands_to_try_next_work_in_another_shell(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite", workers="1")
    proc, lines = quickstart_until_try_next(settings)
    try:
        tried = lines[lines.index("Try next, in another terminal (Ctrl-C here stops the gateway):") + 1:]
        exports = [line.strip() for line in tried if line.startswith("  export ")]
        assert f"export TOLLWAY_PREFIX={settings.prefix}" in exports
        commands = [line.strip() for line in tried if not line.startswith("  export ")]
        assert len(commands) == 6
        fresh_shell = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # nothing of this one's environment
        for command in commands:
            result = subprocess.run(["bash", "-c", "\n".join([*exports, command])], env=fresh_shell, cwd=tmp_path,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, (command, result.stderr)
        healthy = subprocess.run(["bash", "-c", "\n".join([*exports, commands[-1]])], env=fresh_shell,
                                 capture_output=True, text=True, timeout=60)
        assert healthy.stdout.startswith("Tollway is healthy")
        assert (tmp_path / "usage.csv").read_text().startswith("period,")
    finally:
        stop(proc)
