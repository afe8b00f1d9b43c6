"""A database outage: proxying goes on with the last configuration, usage waits on disk, Admin API
writes answer 503, and everything lands exactly once when the database is back."""

from __future__ import annotations

import collections
import sqlite3
import time

import httpx

from tests.conftest import free_port
from tests.server.nodes import Node
from tests.server.relay import Relay
from tests.server.test_metering_e2e import KEYS, Load, seed, wait_for_totals
from tollway.config import Settings


def test_postgres_outage_keeps_proxying_and_loses_no_usage(pg_settings: Settings, echo_upstream: int) -> None:
    settings = pg_settings
    relay = Relay(free_port(), settings.pg_host, settings.pg_port)
    relay.open()
    node = Node(settings.with_overrides(pg_port=relay.listen_port, pg_timeout=2.0, workers=2))
    try:
        node.bootstrap()
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        with Load(node, KEYS) as load:
            time.sleep(0.5)
            relay.cut()
            time.sleep(2.0)
            during = sum(load.received.values())
            write = httpx.post(node.admin + "/consumers", data={"username": "late"}, timeout=30)
            assert write.status_code == 503, write.text
            assert "database" in write.json()["message"].lower()
            time.sleep(1.0)
            assert sum(load.received.values()) > during, "proxying stopped during the outage"
            assert load.errors == 0
            assert list((node.settings.spool_dir).iterdir()), "usage should wait in the spool"
            relay.open()
            time.sleep(0.5)
        wait_for_totals(node, +load.received, timeout=20)
    finally:
        node.close()
        relay.close()


def test_sqlite_locked_keeps_proxying_and_loses_no_usage(sqlite_settings: Settings, echo_upstream: int) -> None:
    settings = sqlite_settings
    node = Node(settings.with_overrides(workers=1))
    try:
        node.bootstrap()
        node.start()
        seed(node, f"http://127.0.0.1:{echo_upstream}")
        blocker = sqlite3.connect(str(settings.database_path), timeout=30)
        with Load(node, KEYS) as load:
            time.sleep(0.3)
            blocker.execute("BEGIN EXCLUSIVE")
            held_from = sum(load.received.values())
            time.sleep(2.0)
            assert sum(load.received.values()) > held_from, "proxying stopped while the database was locked"
            blocker.rollback()
            time.sleep(0.3)
        blocker.close()
        assert load.errors == 0
        wait_for_totals(node, +load.received, timeout=20)
        assert collections.Counter(load.received)  # the load did run
    finally:
        node.close()
