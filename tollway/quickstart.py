"""`tollway quickstart`: the seed's story end to end on the embedded default.

It bootstraps the database, starts a mock upstream and the gateway, creates the `mock` service
and route, key-auth, the consumers digit and poppy with their keys and the global billable
plugin, sends some traffic, prints the month's usage report, and then keeps the gateway running
until Ctrl-C, with the curl commands to try next.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import click
import orjson

from tollway.config import Settings
from tollway.errors import NodeError
from tollway.server.commands import admin_address, admin_connection, admin_headers, admin_status


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _send(conn: http.client.HTTPConnection, method: str, path: str, form: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        body = urllib.parse.urlencode(form) if form is not None else None
        all_headers = dict(headers or {})
        if body is not None:
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _admin(settings: Settings, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, bytes]:
    return _send(admin_connection(settings), method, path, form, admin_headers(settings))


def _metered_this_month(settings: Settings) -> int:
    try:
        _, body = _admin(settings, "GET", "/billable?period=month&group_by=status&size=1000")
        rows = orjson.loads(body).get("data") or []
    except (OSError, ValueError):
        rows = []
    return sum(row.get("requests", 0) for row in rows)


def _wait_metered(settings: Settings, total: int, timeout: float = 15.0) -> None:
    """Wait until the ledger holds `total` calls this month (it is flushed every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _metered_this_month(settings) < total:
        time.sleep(0.2)


def _tollway(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tollway", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NodeError(f"tollway {' '.join(args)} failed: {result.stderr.strip()}")


def run_quickstart(settings: Settings, send_traffic: bool = True) -> int:
    say = click.echo
    # `kill` (SIGTERM) ends the quickstart as Ctrl-C does: the gateway and mock upstream stop with it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    say(f"Tollway quickstart (prefix {settings.prefix}, database {settings.database})")
    _tollway("migrations", "bootstrap")
    _tollway("migrations", "up")
    say("  database bootstrapped")

    mock_port = _free_port()
    mock = subprocess.Popen([sys.executable, "-m", "tollway.mockbin", str(mock_port)])
    gateway = subprocess.Popen([sys.executable, "-m", "tollway", "start"])
    try:
        deadline = time.monotonic() + 60
        while admin_status(settings) != 200:
            if gateway.poll() is not None:
                raise NodeError("the gateway did not start; see the messages above")
            if time.monotonic() > deadline:
                raise NodeError("the gateway did not become healthy within 60s")
            time.sleep(0.1)
        say(f"  gateway started: proxy on {settings.proxy_listen}, Admin API on {settings.admin_listen}")

        steps = [
            ("POST", "/plugins", {"name": "billable"}),
            ("PUT", "/services/mock", {"url": f"http://127.0.0.1:{mock_port}"}),
            ("POST", "/services/mock/routes", {"name": "mock", "paths[]": "/mock"}),
            ("POST", "/routes/mock/plugins", {"name": "key-auth"}),
            ("PUT", "/consumers/digit", {}),
            ("PUT", "/consumers/poppy", {}),
            ("POST", "/consumers/poppy/key-auth", {"key": "poppy-secret"}),
            ("POST", "/consumers/digit/key-auth", {"key": "digit-secret"}),
        ]
        for method, path, form in steps:
            status, _ = _admin(settings, method, path, form)
            if status not in (200, 201, 409):  # 409: already there from an earlier quickstart
                raise NodeError(f"{method} {path} answered {status}")
            say(f"  {method:4} {path:32} {status}")

        proxy_host, _, proxy_port = settings.proxy_listen.rpartition(":")
        if proxy_host in ("0.0.0.0", "::"):
            proxy_host = "127.0.0.1"
        if send_traffic:
            time.sleep(1.2)  # workers apply Admin API writes within a second
            before = _metered_this_month(settings)
            for key, count in (("poppy-secret", 7), ("digit-secret", 4), (None, 3)):
                codes = [
                    _send(http.client.HTTPConnection(proxy_host, int(proxy_port), timeout=10), "GET",
                          "/mock/requests", headers={"apikey": key} if key else None)[0]
                    for _ in range(count)
                ]
                say(f"  {count} calls with apikey {key or '(none)':13} -> {' '.join(map(str, codes))}")
            _wait_metered(settings, total=before + 7 + 4 + 3)
            say("\nThis month's usage (tollway report --period month):")
            report = subprocess.run([sys.executable, "-m", "tollway", "report", "--period", "month"],
                                    capture_output=True, text=True)
            say(report.stdout if report.returncode == 0 else report.stderr)

        host, port = admin_address(settings)
        admin = f"http://{host}:{port}"
        proxy = f"http://{proxy_host}:{proxy_port}"
        say("Try next (Ctrl-C stops the gateway):")
        say(f"  curl {proxy}/mock/requests -H 'apikey: poppy-secret'")
        say(f"  curl {admin}/billable")
        say(f"  curl -s '{admin}/billable?period=month&csv=true' > usage.csv")
        tollway = "tollway" if shutil.which("tollway") else str(Path(sys.executable).parent / "tollway")
        say(f"  {tollway} report --period month")
        return gateway.wait()  # `tollway stop` elsewhere ends it too
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, at any step: stop what was started, quietly
        return 0
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(timeout=60)
            except subprocess.TimeoutExpired:
                gateway.kill()
        mock.terminate()
        mock.wait(timeout=10)
