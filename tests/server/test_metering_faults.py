"""Metering never stops silently: a flush that fails is retried, counted and shown, and catches up."""

from __future__ import annotations

import os
import resource
import time

import httpx

from tests.server.nodes import Node
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
