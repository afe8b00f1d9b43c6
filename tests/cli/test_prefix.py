"""A command finds the database of its prefix, and one that reads never creates one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.server.nodes import tollway


@pytest.mark.parametrize("command", [["report", "--period", "month"], ["migrations", "list"], ["migrations", "up"],
                                     ["migrations", "reset", "--yes"], ["start"], ["start", "--daemon"]])
def test_a_command_in_a_fresh_prefix_names_it_and_creates_no_database(tmp_path: Path, command: list[str]) -> None:
    settings = make_settings(tmp_path / "fresh", "sqlite")
    result = tollway(settings, *command, timeout=60)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: no Tollway database in prefix {settings.prefix} ")
    assert "'tollway migrations bootstrap' creates one there" in line and "TOLLWAY_PREFIX" in line
    assert not settings.database_path.exists()


def test_report_reads_the_database_that_bootstrap_made_in_the_same_prefix(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite")
    assert tollway(settings, "migrations", "bootstrap").returncode == 0
    result = tollway(settings, "report", "--period", "month")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no usage in this range"
