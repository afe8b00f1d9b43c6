"""`tollway reload` applies the settings it sees, and lists every one that changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, make_settings
from tests.server.nodes import Node, node_env, running, tollway


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with running(make_settings(tmp_path / "prefix", "sqlite", workers="1")) as n:
        yield n


def test_reload_lists_what_changes_from_how_the_node_runs(node: Node) -> None:
    settings = node.settings
    moved = f"127.0.0.1:{free_port()}"
    result = tollway(settings, "reload", env=node_env(settings, TOLLWAY_WORKERS="2", TOLLWAY_PROXY_LISTEN=moved))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Settings that change:",
        f"  proxy_listen: {settings.proxy_listen} -> {moved} (at the next start: a running node keeps it)",
        "  workers: 1 -> 2",
        "Tollway reloaded",
    ]
    node.wait_until(lambda: len(node.json("/status")["workers"]) == 2, what="two workers")
    again = tollway(settings, "reload", env=node_env(settings, TOLLWAY_WORKERS="2"))
    assert again.stdout.splitlines() == ["No setting changes", "Tollway reloaded"], again.stderr
