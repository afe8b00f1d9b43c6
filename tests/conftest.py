"""Fixtures every test folder shares: free ports, a real upstream, and settings on a real database.

Tests that touch the database take the `settings` fixture, which runs them once on SQLite and
once on PostgreSQL (a fresh schema each, dropped afterwards). PostgreSQL is at 127.0.0.1:5432
with trust auth (TOLLWAY_TEST_PG_* override it); when it is unreachable the PostgreSQL half is
skipped locally and fails under CI, which must always run both.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollway.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ECHO_UPSTREAM = SHARED / "acceptance" / "echo_upstream.py"

PG = {
    "host": os.environ.get("TOLLWAY_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("TOLLWAY_TEST_PG_PORT", "5432")),
    "user": os.environ.get("TOLLWAY_TEST_PG_USER", "postgres"),
    "database": os.environ.get("TOLLWAY_TEST_PG_DATABASE", "test"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _pg_reachable() -> bool:
    try:
        socket.create_connection((PG["host"], PG["port"]), timeout=1).close()
        return True
    except OSError:
        return False


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG["host"], port=PG["port"], user=PG["user"], database=PG["database"])
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def make_settings(prefix: Path, database: str, **overrides: str) -> Settings:
    """Settings for a test node: its own prefix, loopback ports, one worker."""
    values = {
        "prefix": str(prefix),
        "database": database,
        "proxy_listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "workers": "1",
        "log_level": "info",
        "billable_flush_interval": "0.2",
        "db_update_frequency": "0.5",
    }
    if database == "postgres":
        values.update(pg_host=PG["host"], pg_port=str(PG["port"]), pg_user=PG["user"],
                      pg_database=PG["database"])
    values.update(overrides)
    return load_settings(environ={}, **values)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG['host']}:{PG['port']}")
        pytest.skip("PostgreSQL is not reachable")
    return str(request.param)


def _fresh_settings(tmp_path: Path, database: str) -> Iterator[Settings]:
    if database == "postgres":
        schema = "t_" + uuid.uuid4().hex[:16]
        asyncio.run(_pg_exec(f'CREATE SCHEMA "{schema}"'))
        try:
            yield make_settings(tmp_path / "prefix", "postgres", pg_schema=schema)
        finally:
            asyncio.run(_pg_exec(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    else:
        yield make_settings(tmp_path / "prefix", "sqlite")


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Iterator[Settings]:
    """Settings on a fresh database: a new SQLite file, or a new PostgreSQL schema."""
    yield from _fresh_settings(tmp_path, database)


@pytest.fixture
def pg_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh PostgreSQL schema, for what only PostgreSQL does (clusters)."""
    if not _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG['host']}:{PG['port']}")
        pytest.skip("PostgreSQL is not reachable")
    yield from _fresh_settings(tmp_path, "postgres")


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh SQLite file, for what only SQLite does."""
    yield from _fresh_settings(tmp_path, "sqlite")


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[int]:
    """The shared mockbin-like upstream (JSON echo, /status/NNN, /bytes/N, /delay/MS); its port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ECHO_UPSTREAM), str(port)])
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
