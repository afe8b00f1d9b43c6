"""The node commands: start, stop, reload, health; and the Admin API client they share with the
quickstart (tollway/quickstart.py)."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from tollway.clitools import pass_settings, require_database, tollway_command
from tollway.config import SETTINGS, Settings
from tollway.errors import NodeError
from tollway.server import node

# Settings a reload cannot change in a running node (the master keeps them until the next start;
# the same list as in Master._reload).
RESTART_ONLY = ("prefix", "proxy_listen", "admin_listen", "status_listen", "database", "sqlite_path", "pg_host",
                "pg_port", "pg_database", "pg_schema")
START_TIMEOUT = 60.0


def admin_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.admin_listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return host, int(port)


def admin_connection(settings: Settings, timeout: float = 10.0) -> http.client.HTTPConnection:
    """A connection to this node's own Admin API (TLS when it has a certificate)."""
    host, port = admin_address(settings)
    if settings.admin_ssl_cert and settings.admin_ssl_cert_key:
        # Our own node on loopback, often with a self-signed certificate: encrypt, don't verify.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def admin_headers(settings: Settings) -> dict[str, str]:
    return {"Tollway-Admin-Token": settings.admin_token} if settings.admin_token else {}


def admin_get(settings: Settings, path: str, timeout: float = 2.0) -> tuple[int, Any] | None:
    """GET `path` on the Admin API: the status and the JSON body (None if not JSON), or None when nothing answers."""
    conn = admin_connection(settings, timeout)
    try:
        conn.request("GET", path, headers=admin_headers(settings))
        response = conn.getresponse()
        body = response.read()
    except OSError:
        return None
    finally:
        conn.close()
    try:
        return response.status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return response.status, None


def admin_status(settings: Settings, timeout: float = 2.0) -> int | None:
    """The HTTP status of GET /status on the Admin API, or None when nothing answers."""
    answer = admin_get(settings, "/status", timeout)
    return answer[0] if answer else None


def serving(settings: Settings, pid: int, node_id: str) -> bool:
    """Whether the node with master `pid` and `node_id` answers on admin_listen.

    Another gateway answering on that port is not it: its pid file or its node id differ.
    """
    if node.read_pid(settings) != pid:
        return False
    answer = admin_get(settings, "/status")
    return answer is not None and answer[0] == 200 and isinstance(answer[1], dict) \
        and answer[1].get("node_id") == node_id


def wait_until_serving(settings: Settings, proc: subprocess.Popen[bytes], why_died: Any) -> None:
    """Return once `proc` (a `tollway start`) serves this prefix's node; else NodeError with why_died()."""
    own_id = node.node_id(settings)  # made now if the prefix is new: the node reads the same
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeError(f"Tollway did not start: {why_died()}")
        if serving(settings, proc.pid, own_id):
            return
        time.sleep(0.1)
    raise NodeError(f"Tollway did not answer on {settings.admin_listen} within {START_TIMEOUT:.0f}s: {why_died()}")


def _last_error(log_path: Path, offset: int) -> str:
    """The last line the node wrote to its log since `offset`, with where to read the rest."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").strip().splitlines()
    last = lines[-1].removeprefix("Error: ") if lines else "it said nothing"
    return f"{last} (log: {log_path})"


@click.command()
@click.option("--daemon", is_flag=True, help="Run in the background; return once the node answers.")
@pass_settings
def start(settings: Settings, daemon: bool) -> None:
    """Start the node: the proxy, the Admin API and the workers.

    In the foreground it runs until Ctrl-C or `tollway stop`. With --daemon it returns once this
    node answers, or exits with code 1 saying why it did not start.
    """
    node.ensure_prefix(settings)
    running = node.read_pid(settings)
    if running is not None:
        raise NodeError(f"Tollway is already running in {settings.prefix} (pid {running})")
    require_database(settings)
    if not daemon:
        from tollway.server.master import run_master

        sys.exit(run_master(settings))
    log_path = settings.logs_dir / "tollway.log"
    with open(log_path, "ab") as log_file:
        offset = log_file.tell()
        proc = subprocess.Popen([*tollway_command(settings), "start"], stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=log_file, start_new_session=True)
    wait_until_serving(settings, proc, lambda: _last_error(log_path, offset))
    click.echo(f"Tollway started (pid {proc.pid}); log in {log_path}")


@click.command()
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait for the node to exit (default: drain_timeout + 60).")
@pass_settings
def stop(settings: Settings, timeout: float | None) -> None:
    """Stop the node gracefully: calls in flight finish.

    Their usage is saved before the node exits.
    """
    pid = node.require_running(settings)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + (timeout if timeout is not None else settings.drain_timeout + 60)
    while time.monotonic() < deadline:
        if node.read_pid(settings) != pid:
            click.echo("Tollway stopped")
            return
        time.sleep(0.05)
    raise NodeError(f"Tollway (pid {pid}) did not stop in time")


def setting_changes(running: dict[str, Any], settings: Settings) -> list[str]:
    """One line per setting whose value in `settings` differs from the running node's."""
    lines = []
    for key, value in settings.to_dict().items():
        if key not in SETTINGS or key not in running or running[key] == value:
            continue  # the node does not show its secrets: they cannot be compared
        later = " (at the next start: a running node keeps it)" if key in RESTART_ONLY else ""
        lines.append(f"  {key}: {running[key]} -> {value}{later}")
    return lines


@click.command()
@pass_settings
def reload(settings: Settings) -> None:
    """Apply changed settings to the running node, without a restart.

    No connection is dropped. The settings are those this command sees: the -c FILE and this
    shell's TOLLWAY_* variables. It lists each one that changes; a variable the node was started
    with but this shell lacks goes back to its default. Listen addresses, prefix and database
    change at the next start.
    """
    pid = node.require_running(settings)
    answer = admin_get(settings, "/")
    if answer and answer[0] == 200 and isinstance(answer[1], dict):
        changes = setting_changes(answer[1].get("configuration") or {}, settings)
        click.echo("Settings that change:\n" + "\n".join(changes) if changes else "No setting changes")
    else:
        click.echo(f"The node's settings could not be read on {settings.admin_listen}: the changes are not listed")
    token = node.write_reload_request(settings)
    os.kill(pid, signal.SIGHUP)
    status = node.wait_reload_status(settings, token, timeout=settings.drain_timeout + 60)
    if not status.get("ok"):
        raise NodeError(f"reload failed: {status.get('message')}")
    click.echo("Tollway reloaded")


@click.command()
@pass_settings
def health(settings: Settings) -> None:
    """Say whether the node and its metering are healthy.

    Healthy: the node runs, its Admin API answers, its database is reachable, metering keeps up (no
    call has waited more than 10 s to be recorded) and the spool's disk has room. Otherwise it
    exits with 1, naming what is wrong.
    """
    pid = node.require_running(settings)
    answer = admin_get(settings, "/status", timeout=10.0)
    if answer is None or answer[0] != 200:
        raise NodeError(f"Tollway (pid {pid}) is running but its Admin API does not answer on "
                        f"{settings.admin_listen}")
    status = answer[1] if isinstance(answer[1], dict) else {}
    problems = unhealthy(status)
    if problems:
        raise NodeError(f"Tollway (pid {pid}) is running but unhealthy: {'; '.join(problems)}")
    click.echo(f"Tollway is healthy (pid {pid}, prefix {settings.prefix})")


def unhealthy(status: dict[str, Any]) -> list[str]:
    """What GET /status says is wrong: an unreachable database, metering behind, a spool disk filling up."""
    problems = []
    if status.get("database", {}).get("reachable") is False:
        problems.append("its database is unreachable")
    metering = status.get("metering") or {}
    if metering.get("behind"):
        problem = (f"metering is behind ({metering.get('waiting_calls')} calls wait to be recorded, the oldest "
                   f"for {metering.get('oldest_waiting_seconds')} s)")
        if metering.get("last_error"):
            problem += f", last error: {metering['last_error']}"
        problems.append(problem)
    if metering.get("disk_alarm"):
        problems.append(f"the spool's disk is nearly full ({metering.get('disk_free_bytes')} bytes free)")
    return problems
