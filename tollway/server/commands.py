"""The node commands: start, stop, reload, health (and quickstart, in tollway/quickstart.py)."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import time

import click

from tollway.clitools import pass_settings
from tollway.config import Settings
from tollway.errors import NodeError
from tollway.server import node


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


def admin_status(settings: Settings, timeout: float = 2.0) -> int | None:
    """The HTTP status of GET /status on the Admin API, or None when nothing answers."""
    conn = admin_connection(settings, timeout)
    try:
        conn.request("GET", "/status", headers=admin_headers(settings))
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@click.command()
@click.option("--daemon", is_flag=True, help="run in the background; return once the node is healthy")
@click.pass_context
def start(ctx: click.Context, daemon: bool) -> None:
    """Start a node in the foreground (or with --daemon, in the background)."""
    from tollway.clitools import settings_of

    settings = settings_of(ctx)
    node.ensure_prefix(settings)
    running = node.read_pid(settings)
    if running is not None:
        raise NodeError(f"Tollway is already running in {settings.prefix} (pid {running})")
    if not daemon:
        from tollway.server.master import run_master

        sys.exit(run_master(settings))
    conf = ctx.find_root().obj.get("conf")
    log_path = settings.logs_dir / "tollway.log"
    command = [sys.executable, "-m", "tollway"] + (["-c", conf] if conf else []) + ["start"]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise NodeError(f"Tollway did not start: {tail[0] if tail else 'see ' + str(log_path)}")
        if admin_status(settings) == 200:
            click.echo(f"Tollway started (pid {proc.pid}); log in {log_path}")
            return
        time.sleep(0.1)
    raise NodeError(f"Tollway did not become healthy within 60s; see {log_path}")


@click.command()
@click.option("--timeout", type=float, default=None, help="seconds to wait for the node to exit")
@pass_settings
def stop(settings: Settings, timeout: float | None) -> None:
    """Stop the running node gracefully: in-flight requests finish, usage is flushed."""
    pid = node.require_running(settings)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + (timeout if timeout is not None else settings.drain_timeout + 60)
    while time.monotonic() < deadline:
        if node.read_pid(settings) != pid:
            click.echo("Tollway stopped")
            return
        time.sleep(0.05)
    raise NodeError(f"Tollway (pid {pid}) did not stop in time")


@click.command()
@pass_settings
def reload(settings: Settings) -> None:
    """Make the running node apply the settings as this command sees them (file + environment)."""
    pid = node.require_running(settings)
    token = node.write_reload_request(settings)
    os.kill(pid, signal.SIGHUP)
    status = node.wait_reload_status(settings, token, timeout=settings.drain_timeout + 60)
    if not status.get("ok"):
        raise NodeError(f"reload failed: {status.get('message')}")
    click.echo("Tollway reloaded")


@click.command()
@pass_settings
def health(settings: Settings) -> None:
    """Say whether the node in this prefix is running and answering."""
    pid = node.require_running(settings)
    code = admin_status(settings)
    if code != 200:
        raise NodeError(f"Tollway (pid {pid}) is running but its Admin API does not answer on "
                        f"{settings.admin_listen}")
    click.echo(f"Tollway is healthy (pid {pid}, prefix {settings.prefix})")


@click.command()
@click.option("--no-traffic", is_flag=True, help="set up the seed's entities but send no sample traffic")
@pass_settings
def quickstart(settings: Settings, no_traffic: bool) -> None:
    """Tell the seed's story: a mock service, key-auth, two consumers, traffic and the usage report."""
    from tollway.quickstart import run_quickstart

    sys.exit(run_quickstart(settings, send_traffic=not no_traffic))
