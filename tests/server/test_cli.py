"""The CLI's contract: bad settings and bad states end in one clear line and exit code 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.server.nodes import node_env, tollway
from tollway.config import Settings


def test_unknown_setting_in_file_names_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "tollway.conf"
    conf.write_text("prefix = /tmp/x\nproxy_lissten = 0.0.0.0:8000\n")
    settings = make_settings(tmp_path / "p", "sqlite")
    result = tollway(settings, "-c", str(conf), "migrations", "list")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: unknown setting 'proxy_lissten' in {conf}"]


def test_bad_value_from_environment_names_key_and_expectation(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "p", "sqlite")
    result = tollway(settings, "health", env=node_env(settings, TOLLWAY_WORKERS="lots"))
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "'workers'" in line and "TOLLWAY_WORKERS" in line and "expected" in line
    assert len(line.splitlines()) == 1


def test_start_on_a_database_never_bootstrapped_says_what_to_run(settings: Settings) -> None:
    result = tollway(settings, "start", timeout=60)
    assert result.returncode == 1
    assert "tollway migrations bootstrap" in result.stderr


def test_start_with_the_proxy_port_taken_reports_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "p", "sqlite")
    assert tollway(settings, "migrations", "bootstrap").returncode == 0
    host, _, port = settings.proxy_listen.rpartition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        result = tollway(settings, "start", timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on {settings.proxy_listen} (proxy_listen): address already in use" in result.stderr


@pytest.mark.parametrize("command", ["stop", "reload", "health"])
def test_commands_on_a_stopped_node_fail_clearly(tmp_path: Path, command: str) -> None:
    settings = make_settings(tmp_path / "p", "sqlite")
    result = tollway(settings, command)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: Tollway is not running in {settings.prefix}"


def test_daemon_start_health_and_stop(settings: Settings) -> None:
    assert tollway(settings, "migrations", "bootstrap").returncode == 0
    started = tollway(settings, "start", "--daemon", timeout=90)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("Tollway started (pid ")
        healthy = tollway(settings, "health")
        assert healthy.returncode == 0 and "Tollway is healthy" in healthy.stdout
        again = tollway(settings, "start", "--daemon")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = tollway(settings, "stop")
    assert stopped.returncode == 0 and stopped.stdout.strip() == "Tollway stopped"
    assert tollway(settings, "health").returncode == 1


def test_start_with_an_unreadable_certificate_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "p", "sqlite", proxy_ssl_cert=str(tmp_path / "missing.pem"),
                             proxy_ssl_cert_key=str(tmp_path / "missing-key.pem"))
    assert tollway(settings, "migrations", "bootstrap").returncode == 0
    result = tollway(settings, "start", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"Error: cannot load proxy_ssl_cert {tmp_path / 'missing.pem'}")
    assert len(result.stderr.strip().splitlines()) == 1
