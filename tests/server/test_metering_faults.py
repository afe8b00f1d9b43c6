"""Metering never stops silently: a flush that fails is retried, counted and shown, and catches up."""

from __future__ import annotations

import os
import resource
import time

import httpx

from tests.server.nodes import Node, tollway
from tests.server.test_metering_e2e import KEYS, Load, seed, wait_for_totals
from tollway.config import Settings


def _metering(node: Node) -> dict[str, object]:
    return httpx.get(node.admin + "/status", timeout=30).json()["metering"]  # type: ignore[no-any-return]


def test_the_flusher_outlives_the_master_running_out_of_descriptors(sqlite_settings: Settings,
                                                                    echo_upstream: int) -> None:
    node = Node(sqlite_settings.with_overrides(workers=1))
    try:
        node.bootstrap()
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        assert node.proc is not None
        master = node.proc.pid
        soft, hard = resource.prlimit(master, resource.RLIMIT_NOFILE)
        with Load(node, KEYS, threads_per_key=1) as load:
            time.sleep(0.3)
            # A limit below what the master holds: every descriptor it opens from now on fails with
            # EMFILE (the spool directory's lock, the spool files, the SQLite connection); the workers
            # have limits of their own.
            assert len(os.listdir(f"/proc/{master}/fd")) > 16
            resource.prlimit(master, resource.RLIMIT_NOFILE, (16, hard))
            time.sleep(3.0)
            resource.prlimit(master, resource.RLIMIT_NOFILE, (soft, hard))
            starved = _metering(node)
            time.sleep(0.5)
        assert load.errors == 0 and sum(load.received.values()) > 0
        wait_for_totals(node, +load.received, timeout=20)
        assert isinstance(starved["errors_total"], int) and starved["errors_total"] > 0, starved
        assert "open" in str(starved["last_error"]), starved  # Too many open files, unable to open database file
        assert starved["flusher_restarts"] == 0, starved      # the loop itself never died
        after = _metering(node)
        assert after["flush_failures"] == 0 and after["behind"] is False and after["waiting_calls"] == 0, after
    finally:
        node.close()


def test_status_shows_the_backlog_while_the_database_is_away(sqlite_settings: Settings, echo_upstream: int) -> None:
    import sqlite3

    node = Node(sqlite_settings.with_overrides(workers=1))
    try:
        node.bootstrap()
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        blocker = sqlite3.connect(str(sqlite_settings.database_path), timeout=30)
        with Load(node, KEYS, threads_per_key=1) as load:
            time.sleep(0.3)
            blocker.execute("BEGIN EXCLUSIVE")
            node.wait_until(lambda: (_metering(node)["waiting_calls"] or 0) > 100, timeout=30,  # type: ignore[operator]
                            what="the backlog shown in /status")
            held = _metering(node)
            blocker.rollback()
            time.sleep(0.3)
        blocker.close()
        assert held["flush_failures"] and held["last_error"] and held["waiting_bytes"], held
        assert isinstance(held["oldest_waiting_seconds"], float) and held["oldest_waiting_seconds"] > 0, held
        wait_for_totals(node, +load.received, timeout=30)
        node.wait_until(lambda: _metering(node)["waiting_calls"] == 0, timeout=10, what="the backlog emptied")
    finally:
        node.close()


def test_health_fails_while_metering_is_behind_and_passes_once_it_caught_up(sqlite_settings: Settings,
                                                                            echo_upstream: int) -> None:
    import sqlite3

    settings = sqlite_settings.with_overrides(workers=1)
    node = Node(settings)
    try:
        node.bootstrap()
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        assert tollway(settings, "health").returncode == 0
        blocker = sqlite3.connect(str(settings.database_path), timeout=30)
        with Load(node, KEYS, threads_per_key=1) as load:
            blocker.execute("BEGIN EXCLUSIVE")  # the ledger cannot be written: calls wait in the spool
            node.wait_until(lambda: _metering(node)["behind"] is True, timeout=40, what="metering behind")
            sick = tollway(settings, "health")
            blocker.rollback()
        blocker.close()
        assert sick.returncode == 1, sick
        assert "unhealthy: metering is behind (" in sick.stderr and "calls wait to be recorded" in sick.stderr, sick
        wait_for_totals(node, +load.received, timeout=30)
        node.wait_until(lambda: _metering(node)["behind"] is False, timeout=10, what="metering caught up")
        healthy = tollway(settings, "health")
        assert healthy.returncode == 0 and healthy.stdout.startswith("Tollway is healthy"), healthy
    finally:
        node.close()


def test_what_status_says_is_wrong_is_named() -> None:
    from tollway.server.commands import unhealthy

    assert unhealthy({"database": {"reachable": True}, "metering": {"behind": False, "disk_alarm": False}}) == []
    assert unhealthy({"database": {"reachable": False}, "metering": {
        "behind": True, "waiting_calls": 1200, "oldest_waiting_seconds": 12.5, "last_error": "database is locked",
        "disk_alarm": True, "disk_free_bytes": 4096}}) == [
        "its database is unreachable",
        "metering is behind (1200 calls wait to be recorded, the oldest for 12.5 s), last error: database is locked",
        "the spool's disk is nearly full (4096 bytes free)"]
