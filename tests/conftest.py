"""Fixtures every test folder shares: free ports, a real upstream, and settings on a real database.

The tests need nothing outside the repository: their upstream is Tollway's own mockbin
(tollway/mockbin.py). A prerequisite that is missing ends the session once, naming it, instead of
failing every test that needs it.

Tests that touch the database take the `settings` fixture, which runs them once on SQLite and
once on PostgreSQL (a fresh schema each, dropped afterwards). PostgreSQL is at 127.0.0.1:5432
with trust auth (TOLLWAY_TEST_PG_* override it); when it is unreachable the PostgreSQL half is
skipped locally and ends the session under CI, which must always run both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tollway import mockbin
from tollway.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

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


def _require_pg() -> None:
    """Skip without PostgreSQL; under CI, which must run both halves, end the session once."""
    if _pg_reachable():
        return
    if os.environ.get("CI"):
        pytest.exit(f"PostgreSQL is not reachable at {PG['host']}:{PG['port']} (CI runs every test on it)",
                    returncode=1)
    pytest.skip("PostgreSQL is not reachable")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        _require_pg()
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


@contextlib.contextmanager
def fresh_database(tmp_path: Path, database: str) -> Iterator[Settings]:
    """Settings on a fresh database for the benches: as the `settings` fixture, outside pytest."""
    yield from _fresh_settings(tmp_path, database)


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Iterator[Settings]:
    """Settings on a fresh database: a new SQLite file, or a new PostgreSQL schema."""
    yield from _fresh_settings(tmp_path, database)


@pytest.fixture
def pg_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh PostgreSQL schema, for what only PostgreSQL does (clusters)."""
    _require_pg()
    yield from _fresh_settings(tmp_path, "postgres")


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh SQLite file, for what only SQLite does."""
    yield from _fresh_settings(tmp_path, "sqlite")


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[int]:
    """Tollway's mockbin (JSON echo, /status/NNN, /bytes/N, /delay/MS) in a process of its own; its port."""
    try:
        proc, port = mockbin.spawn()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=1)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    """Debian's chromium (scripts/test.sh installs it where it may), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright (playwright.sync_api.Browser), for web pages.

    One per test module: Playwright's sync API runs an event loop on the main thread while it is
    started, so a module that uses asyncio.run must not come while one is (the test run's order
    differs with pytest-xdist).

    Playwright drives Debian's chromium (no browser of its own is downloaded). Without one the
    browser tests are skipped locally, once, naming what is missing; under CI the session ends.
    """
    executable = chromium_path()
    if executable is None:
        message = "the browser tests need chromium (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.exit(message, returncode=1)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()
