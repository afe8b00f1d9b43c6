"""A plugin from outside Tollway: examples/hello-header, installed into a fresh virtualenv beside
Tollway, found by its entry point, enabled with `plugins = bundled,hello-header`, configured over
the Admin API, and seen in the proxy's responses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, make_settings
from tests.server.nodes import node_env

EXAMPLE = ROOT / "examples" / "hello-header"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with Tollway (plain Python: no compiler needed) and the example plugin."""
    path = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    installed = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT), str(EXAMPLE)],
                               env={**os.environ, "TOLLWAY_PURE_PYTHON": "1"}, capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return path


@pytest.fixture
def node(venv: Path, tmp_path: Path, echo_upstream: int) -> Iterator[tuple[str, str]]:
    """A node of the virtualenv's Tollway with hello-header enabled: (admin URL, proxy URL)."""
    settings = make_settings(tmp_path / "prefix", "sqlite")
    # Only the virtualenv has the plugin installed: it is named in the node's environment alone.
    env = {**node_env(settings), "TOLLWAY_PLUGINS": "bundled,hello-header"}
    tollway = str(venv / "bin" / "tollway")
    done = subprocess.run([tollway, "migrations", "bootstrap"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    log = open(tmp_path / "node.log", "ab")
    proc = subprocess.Popen([tollway, "start"], env=env, stdout=log, stderr=log)
    admin, proxy = f"http://{settings.admin_listen}", f"http://{settings.proxy_listen}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(admin + "/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "node.log").read_text())
        for path, data in [("/services", {"name": "echo", "url": f"http://127.0.0.1:{echo_upstream}"}),
                           ("/services/echo/routes", {"name": "hello", "paths[]": "/hello"}),
                           ("/services/echo/routes", {"name": "plain", "paths[]": "/plain"})]:
            assert httpx.post(admin + path, data=data, timeout=10).status_code == 201
        yield admin, proxy
    finally:
        proc.terminate()
        proc.wait(60)


def test_an_installed_plugin_is_enabled_configured_and_answers_with_its_header(node: tuple[str, str]) -> None:
    admin, proxy = node
    assert "hello-header" in httpx.get(admin + "/plugins/enabled", timeout=10).json()["enabled_plugins"]
    assert httpx.get(admin + "/schemas/plugins/hello-header", timeout=10).status_code == 200
    missing = httpx.post(admin + "/routes/hello/plugins", data={"name": "hello-header"}, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["fields"] == {"config": {"value": "required field missing"}}
    created = httpx.post(admin + "/routes/hello/plugins", data={"name": "hello-header", "config.value": "world"},
                         timeout=10)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the workers apply a write within a second
        answer = httpx.get(proxy + "/hello/anything", timeout=10)
        if "x-hello" in answer.headers:
            break
        time.sleep(0.1)
    assert answer.status_code == 200 and answer.headers["x-hello"] == "world"
    plain = httpx.get(proxy + "/plain/anything", timeout=10)
    assert plain.status_code == 200 and "x-hello" not in plain.headers


def test_a_node_that_enables_a_plugin_not_installed_says_so_in_one_line(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite")
    env = {**node_env(settings), "TOLLWAY_PLUGINS": "bundled,hello-nobody"}
    done = subprocess.run([sys.executable, "-m", "tollway", "start"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "plugin 'hello-nobody' is not installed" in done.stderr and "TOLLWAY_PLUGINS" in done.stderr
