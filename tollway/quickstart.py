"""`tollway quickstart`: the walkthrough of Kong's API monetization guide, end to end.

It bootstraps the database, starts a mock upstream (tollway/mockbin.py) and the gateway, creates
the `mock` service and route, key-auth, the consumers digit and poppy with their keys and the
global billable plugin, sends some traffic, prints the month's usage report, and then keeps the
gateway running until Ctrl-C, with the commands to try next. Run again, it finds what an earlier
run created and says so.
"""

from __future__ import annotations

import http.client
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import click
import orjson

from tollway import mockbin
from tollway.clitools import pass_settings, tollway_command
from tollway.config import Settings, is_setting_variable
from tollway.errors import NodeError
from tollway.server.commands import admin_address, admin_connection, admin_headers, wait_until_serving

# What the walkthrough creates, in order: (method, path, form). PUT creates or updates by name.
ENTITIES = [
    ("POST", "/plugins", {"name": "billable"}),
    ("PUT", "/services/mock", {"url": "MOCK_URL"}),
    ("POST", "/services/mock/routes", {"name": "mock", "paths[]": "/mock"}),
    ("POST", "/routes/mock/plugins", {"name": "key-auth"}),
    ("PUT", "/consumers/digit", {}),
    ("PUT", "/consumers/poppy", {}),
    ("POST", "/consumers/poppy/key-auth", {"key": "poppy-secret"}),
    ("POST", "/consumers/digit/key-auth", {"key": "digit-secret"}),
    # A price list: calls to mock that succeed, the first 5 of a month free, then 0.01 USD each
    ("PUT", "/meters/requests", {"route.name": "mock", "status[]": "2xx"}),
    ("PUT", "/plans/starter", {"currency": "USD", "base_fee": "0"}),
    ("POST", "/plans/starter/charges", {"meter.name": "requests", "model": "graduated",
                                        "tiers[1].up_to": "5", "tiers[1].unit_price": "0",
                                        "tiers[2].up_to": "", "tiers[2].unit_price": "0.01"}),
    ("POST", "/plans/starter/entitlements", {"meter.name": "requests", "limit": "1000", "period": "day",
                                             "enforcement": "hard"}),
    ("POST", "/consumers/poppy/subscriptions", {"plan.name": "starter"}),
    ("POST", "/consumers/digit/subscriptions", {"plan.name": "starter"}),
]
SUBSCRIBERS = ("poppy", "digit")
TRAFFIC = (("poppy-secret", 7), ("digit-secret", 4), (None, 3))  # (apikey, calls)
EARLIER = "already there, from an earlier quickstart"


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


def _tollway(settings: Settings, *args: str) -> None:
    result = subprocess.run([*tollway_command(settings), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NodeError(f"tollway {' '.join(args)} failed: {result.stderr.strip()}")


def _changed(before: bytes, after: bytes) -> bool:
    """Whether a PUT changed the entity: its fields other than updated_at differ."""
    try:
        old, new = orjson.loads(before), orjson.loads(after)
    except ValueError:
        return True
    return {k: v for k, v in old.items() if k != "updated_at"} != {k: v for k, v in new.items() if k != "updated_at"}


def _create_entities(settings: Settings, mock_url: str) -> None:
    for method, path, form in ENTITIES:
        form = {key: mock_url if value == "MOCK_URL" else value for key, value in form.items()}
        before_status, before = _admin(settings, "GET", path) if method == "PUT" else (404, b"")
        status, body = _admin(settings, method, path, form)
        outcome = {200: EARLIER + (", updated" if _changed(before, body) else "") if before_status == 200
                   else "created", 201: "created", 409: EARLIER}.get(status)
        if outcome is None:
            raise NodeError(f"{method} {path} answered {status}: {body.decode(errors='replace')}")
        click.echo(f"  {method:4} {path:32} {status} {outcome}")


def _proxy_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.proxy_listen.rpartition(":")
    host = host.strip("[]")
    return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), int(port)


def _send_traffic(settings: Settings) -> None:
    time.sleep(1.2)  # workers apply Admin API writes within a second
    host, port = _proxy_address(settings)
    before = _metered_this_month(settings)
    for key, count in TRAFFIC:
        codes = [_send(http.client.HTTPConnection(host, port, timeout=10), "GET", "/mock/requests",
                       headers={"apikey": key} if key else None)[0] for _ in range(count)]
        click.echo(f"  {count} calls with apikey {key or '(none)':13} -> {' '.join(map(str, codes))}")
    _wait_metered(settings, total=before + sum(count for _, count in TRAFFIC))
    click.echo("\nThis month's usage (tollway report --period month):")
    report = subprocess.run([*tollway_command(settings), "report", "--period", "month"],
                            capture_output=True, text=True)
    click.echo(report.stdout if report.returncode == 0 else report.stderr)
    _show_money(settings)


def _show_money(settings: Settings) -> None:
    """Each subscriber's bill so far this period (GET /consumers/{consumer}/usage)."""
    click.echo("This period's bill so far (GET /consumers/{consumer}/usage), plan starter:")
    for username in SUBSCRIBERS:
        status, body = _admin(settings, "GET", f"/consumers/{username}/usage")
        if status != 200:
            click.echo(f"  {username}: {status} {body.decode(errors='replace')}")
            continue
        usage = orjson.loads(body)
        lines = ", ".join(f"{m['units']} {m['meter']} = {m['amount']}" for m in usage.get("meters") or ())
        click.echo(f"  {username:6} {lines or 'nothing yet'}; total {usage['total']} {usage['currency']}")
    click.echo("")

def _try_next(settings: Settings) -> None:
    """The commands to try in another terminal, with the settings this one has from its environment."""
    host, port = admin_address(settings)
    admin = f"http://{host}:{port}"
    proxy_host, proxy_port = _proxy_address(settings)
    entry_point = Path(sys.executable).parent / "tollway"
    tollway = shlex.quote(str(entry_point)) if entry_point.exists() else "tollway"
    if settings.config_file:
        tollway += " -c " + shlex.quote(str(Path(settings.config_file).absolute()))
    exports = [f"export {name}={shlex.quote(value)}" for name, value in sorted(os.environ.items())
               if is_setting_variable(name)]
    click.echo("Try next, in another terminal (Ctrl-C here stops the gateway):")
    for line in exports:
        click.echo(f"  {line}")
    click.echo(f"  curl http://{proxy_host}:{proxy_port}/mock/requests -H 'apikey: poppy-secret'")
    click.echo(f"  curl {admin}/billable")
    click.echo(f"  curl -s '{admin}/billable?period=month&csv=true' > usage.csv")
    click.echo(f"  curl {admin}/consumers/poppy/usage")
    click.echo(f"  {tollway} report --period month")
    click.echo(f"  {tollway} health")


def run_quickstart(settings: Settings, send_traffic: bool = True) -> int:
    # `kill` (SIGTERM) ends the quickstart as Ctrl-C does: the gateway and mock upstream stop with it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    click.echo(f"Tollway quickstart (prefix {settings.prefix}, database {settings.database})")
    _tollway(settings, "migrations", "bootstrap")
    _tollway(settings, "migrations", "up")
    click.echo("  database bootstrapped")

    mock, mock_port = mockbin.spawn()
    gateway = subprocess.Popen([*tollway_command(settings), "start"])
    try:
        wait_until_serving(settings, gateway, lambda: "see the messages above")
        click.echo(f"  gateway started: proxy on {settings.proxy_listen}, Admin API on {settings.admin_listen}")
        _create_entities(settings, f"http://127.0.0.1:{mock_port}")
        if send_traffic:
            _send_traffic(settings)
        _try_next(settings)
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


@click.command()
@click.option("--no-traffic", is_flag=True, help="Create the services, consumers and keys, but send no calls.")
@pass_settings
def quickstart(settings: Settings, no_traffic: bool) -> None:
    """Try Tollway in one command, with a mock service and consumers.

    It starts a mock upstream and the gateway, creates a `mock` service and route with key-auth,
    the consumers digit and poppy with their API keys and the billable plugin, a plan they are
    subscribed to, sends a few calls, prints this month's usage report and what it costs so far,
    and keeps the gateway running until Ctrl-C.
    """
    sys.exit(run_quickstart(settings, send_traffic=not no_traffic))
