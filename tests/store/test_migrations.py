"""Migrations on SQLite and PostgreSQL: bootstrap (twice is harmless), up, list, reset, the CLI."""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import TypeVar

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from tests.server.nodes import node_env
from tollway.config import Settings
from tollway.errors import NotBootstrapped, StoreError, StoreUnavailable
from tollway.store import migrations
from tollway.store.cli import migrations as migrations_cli
from tollway.store.db import Database
from tollway.store.db import run_with_database as run
from tollway.store.snapshot import load_snapshot
from tollway.store.tables import schema_meta
from tollway.store.version import config_version

T = TypeVar("T")




def cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(migrations_cli, list(args), obj={"settings": settings})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_bootstrap_twice_is_harmless(settings: Settings) -> None:
    ran = run(settings, lambda db: migrations.bootstrap(db, settings))
    assert [(m.subsystem, m.name) for m in ran][:9] == [
        ("core", "000_base"), ("metering", "000_base"), ("metering", "001_week_grain"), ("metering", "002_latency"),
        ("metering", "003_route_rollup"), ("billing", "000_base"), ("billing", "001_invoices"),
        ("dashboard", "000_portal_tokens"), ("key-auth", "000_base")]
    assert run(settings, lambda db: migrations.bootstrap(db, settings)) == []
    assert run(settings, lambda db: migrations.pending(db, settings)) == []
    assert run(settings, config_version) == 1


def test_not_bootstrapped_is_reported(settings: Settings) -> None:
    with pytest.raises(NotBootstrapped):
        run(settings, migrations.ensure_bootstrapped)
    with pytest.raises(NotBootstrapped):
        run(settings, lambda db: migrations.up(db, settings))


def test_up_runs_the_migrations_of_newly_enabled_plugins(settings: Settings) -> None:
    core_only = settings.with_overrides(plugins="off")
    run(core_only, lambda db: migrations.bootstrap(db, core_only))
    states = run(settings, lambda db: migrations.list_state(db, settings))
    assert states[0] == migrations.SubsystemState("core", ("000_base",), ())
    assert states[1] == migrations.SubsystemState("metering", ("000_base", "001_week_grain", "002_latency",
                                                                "003_route_rollup"), ())
    assert states[2] == migrations.SubsystemState("billing", ("000_base", "001_invoices"), ())
    assert states[3] == migrations.SubsystemState("dashboard", ("000_portal_tokens",), ())
    assert states[4] == migrations.SubsystemState("key-auth", (), ("000_base", "001_ttl_expiry"))
    assert states[5] == migrations.SubsystemState("acl", (), ("000_base",))
    with pytest.raises(StoreError, match="pending migrations"):
        run(settings, lambda db: migrations.ensure_bootstrapped(db, settings))
    ran = run(settings, lambda db: migrations.up(db, settings))
    assert ("key-auth", "000_base") in [(m.subsystem, m.name) for m in ran]
    assert run(settings, lambda db: migrations.up(db, settings)) == []


def test_the_ledger_migrations_recorded_as_billable_count_as_run(settings: Settings) -> None:
    """A database bootstrapped while the ledger was the billable plugin's: nothing is run again."""
    run(settings, lambda db: migrations.bootstrap(db, settings))

    async def record_as_billable(db: Database) -> None:
        async with db.begin() as conn:
            await conn.execute(schema_meta.update().where(schema_meta.c.subsystem == "metering")
                               .values(subsystem="billable"))

    run(settings, record_as_billable)
    assert run(settings, lambda db: migrations.pending(db, settings)) == []
    states = {s.subsystem: s for s in run(settings, lambda db: migrations.list_state(db, settings))}
    assert states["metering"].executed == ("000_base", "001_week_grain", "002_latency", "003_route_rollup")
    assert not states["metering"].pending


def test_snapshot_of_a_fresh_database(settings: Settings) -> None:
    run(settings, lambda db: migrations.bootstrap(db, settings))
    snapshot = run(settings, lambda db: load_snapshot(db, settings))
    assert snapshot == {"version": 1, "services": [], "routes": [], "consumers": [], "plugins": [],
                        "keyauth_credentials": [], "acls": [], "subscriptions": []}


def test_key_auth_ttls_become_expiry_times(settings: Settings) -> None:
    """Before 001, `ttl` held the seconds given and nothing expired: a credential now expires that
    long after it was created, and a ttl of 0 never."""
    core_only = settings.with_overrides(plugins="off")
    run(core_only, lambda db: migrations.bootstrap(db, core_only))
    base = importlib.import_module("tollway.plugins.key_auth.migrations.000_base")
    expiry = importlib.import_module("tollway.plugins.key_auth.migrations.001_ttl_expiry")

    async def migrate(db: Database) -> list[tuple[str, int | None]]:
        async with db.begin() as conn:
            await conn.run_sync(base.up)
            await conn.execute(text("INSERT INTO consumers (id, created_at, updated_at, username) "
                                    "VALUES ('c', 1, 1, 'c')"))
            for ident, ttl in (("never", None), ("zero", 0), ("hundred", 100)):
                await conn.execute(text("INSERT INTO keyauth_credentials (id, created_at, updated_at, consumer_id, "
                                        "key, ttl) VALUES (:id, 1000, 1000, 'c', :id, :ttl)"),
                                   {"id": ident, "ttl": ttl})
            await conn.run_sync(expiry.up)
            rows = await conn.execute(text("SELECT id, ttl FROM keyauth_credentials ORDER BY id"))
            return [(ident, ttl) for ident, ttl in rows]

    assert run(settings, migrate) == [("hundred", 1100), ("never", None), ("zero", None)]


def test_the_route_rollup_is_built_from_the_ledger(settings: Settings) -> None:
    """003 sums the ledger rows already there over consumers, grain by grain; run again, the same."""
    run(settings, lambda db: migrations.bootstrap(db, settings))
    rollup = importlib.import_module("tollway.metering.migrations.003_route_rollup")
    rows = [("day", 86_400, consumer, "s", route, status, requests)
            for consumer, route, status, requests in (("c1", "r1", 200, 3), ("c2", "r1", 200, 4), ("", "r1", 401, 1),
                                                      ("c1", "r2", 200, 5), ("c2", "r1", 500, 2))]
    rows += [("month", 0, consumer, service, route, status, requests * 2)
             for _grain, _start, consumer, service, route, status, requests in rows]

    async def migrate(db: Database) -> list[tuple[object, ...]]:
        async with db.begin() as conn:
            await conn.execute(text("DELETE FROM billable_usage_routes"))
            for grain, start, consumer, service, route, status, requests in rows:
                await conn.execute(text(
                    "INSERT INTO billable_usage VALUES (:grain, :start, :consumer, :service, :route, :status, "
                    ":requests, :request_bytes, :response_bytes, :latency)"),
                    {"grain": grain, "start": start, "consumer": consumer, "service": service, "route": route,
                     "status": status, "requests": requests, "request_bytes": requests * 10,
                     "response_bytes": requests * 100, "latency": requests * 1000})
            await conn.run_sync(rollup.up)
            await conn.run_sync(rollup.up)
            found = await conn.execute(text("SELECT * FROM billable_usage_routes ORDER BY grain, route_id, status"))
            return [tuple(row) for row in found]

    assert run(settings, migrate) == [
        ("day", 86_400, "s", "r1", 200, 7, 70, 700, 7000), ("day", 86_400, "s", "r1", 401, 1, 10, 100, 1000),
        ("day", 86_400, "s", "r1", 500, 2, 20, 200, 2000), ("day", 86_400, "s", "r2", 200, 5, 50, 500, 5000),
        ("month", 0, "s", "r1", 200, 14, 140, 1400, 14000), ("month", 0, "s", "r1", 401, 2, 20, 200, 2000),
        ("month", 0, "s", "r1", 500, 4, 40, 400, 4000), ("month", 0, "s", "r2", 200, 10, 100, 1000, 10000)]


def test_cli_bootstrap_up_list_reset(settings: Settings) -> None:
    code, out = cli(settings, "bootstrap")
    assert code == 0 and "core migrated up to: 000_base" in out
    code, out = cli(settings, "bootstrap")
    assert code == 0 and "already bootstrapped" in out
    code, out = cli(settings, "up")
    assert code == 0 and "up-to-date" in out
    code, out = cli(settings, "list")
    assert code == 0 and "core: 000_base" in out and "key-auth: 000_base" in out
    code, out = cli(settings, "reset", "--yes")
    assert code == 0
    with pytest.raises(NotBootstrapped):
        cli(settings, "list")
    assert cli(settings, "bootstrap")[0] == 0


def test_unreachable_database_is_store_unavailable(settings: Settings) -> None:
    if settings.database == "sqlite":
        broken = settings.with_overrides(sqlite_path="/proc/nope/tollway.db", prefix="/proc/nope")
    else:
        broken = settings.with_overrides(pg_port=1, pg_timeout=2.0)
    with pytest.raises(StoreUnavailable, match="database unavailable"):
        run(broken, migrations.ensure_bootstrapped)


def test_nodes_bootstrapping_at_once_run_every_migration_exactly_once(settings: Settings) -> None:
    env = node_env(settings)
    runs = [subprocess.Popen([sys.executable, "-m", "tollway", "migrations", "bootstrap"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(run.wait(60), *run.communicate()) for run in runs]
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
    assert sum("core migrated up to: 000_base" in out for _, out, _ in results) <= 1

    async def recorded(db: Database) -> list[tuple[str, str]]:
        async with db.connect() as conn:
            rows = await conn.execute(select(schema_meta.c.subsystem, schema_meta.c.name))
            return sorted((subsystem, name) for subsystem, name in rows)

    rows = run(settings, recorded)
    assert len(rows) == len(set(rows))
    assert {("core", "000_base"), ("key-auth", "000_base")} <= set(rows)
    assert run(settings, lambda db: migrations.pending(db, settings)) == []
