"""`tollway start --daemon` confirms its own node, and child processes ignore the current directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import make_settings
from tests.server.nodes import node_env, tollway
from tollway import mockbin
from tollway.config import Settings

ENTRY_POINT = Path(sys.executable).parent / "tollway"


def test_daemon_start_on_a_port_another_server_answers_on_says_why_and_fails(tmp_path: Path) -> None:
    # Another server answers 200 to GET /status on the Admin API's port: it is not this node.
    other, port = mockbin.spawn()
    try:
        settings = make_settings(tmp_path / "p", "sqlite", admin_listen=f"127.0.0.1:{port}")
        assert tollway(settings, "migrations", "bootstrap").returncode == 0
        result = tollway(settings, "start", "--daemon", timeout=90)
    finally:
        other.terminate()
        other.wait()
    assert result.returncode == 1, result.stdout
    assert "Tollway started" not in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: Tollway did not start: cannot listen on 127.0.0.1:{port} (admin_listen): "
                           "address already in use (log: ")
    assert tollway(settings, "health").returncode == 1


def _start_stop_from(folder: Path, settings: Settings) -> None:
    """`tollway start --daemon`, a proxied answer from a worker, and `tollway stop`, run in `folder`."""
    env = node_env(settings)
    run = lambda *args: subprocess.run([str(ENTRY_POINT), *args], cwd=folder, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=90)
    assert run("migrations", "bootstrap").returncode == 0
    started = run("start", "--daemon")
    try:
        assert started.returncode == 0, started.stderr + (Path(settings.prefix) / "logs" / "tollway.log").read_text()
        status = httpx.get(f"http://{settings.admin_listen}/status").json()
        assert [worker["slot"] for worker in status["workers"]] == [0]
        # A worker answers the proxy (404: no route yet), so it imported Tollway, not the folder.
        assert httpx.get(f"http://{settings.proxy_listen}/nothing").status_code == 404
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr


def test_the_daemon_and_its_workers_start_from_a_folder_holding_a_tollway_folder(tmp_path: Path) -> None:
    # A clone's parent folder: `python -m tollway` there would find the clone, not the package.
    (tmp_path / "tollway" / "tollway").mkdir(parents=True)
    (tmp_path / "tollway" / "README.md").write_text("a clone\n")
    _start_stop_from(tmp_path, make_settings(tmp_path / "prefix", "sqlite"))
