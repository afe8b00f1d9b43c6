"""Several nodes on one PostgreSQL database: one configuration, one exact usage ledger."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.server.nodes import Node
from tests.server.test_metering_e2e import KEYS, Load, metered, seed, wait_seeded
from tollway.config import Settings


@pytest.fixture
def cluster(pg_settings: Settings, tmp_path: Path) -> Iterator[list[Node]]:
    settings = pg_settings
    nodes = []
    for i in range(3):
        nodes.append(Node(settings.with_overrides(
            prefix=str(tmp_path / f"node{i}"), workers=1,
            proxy_listen=f"127.0.0.1:{free_port()}", admin_listen=f"127.0.0.1:{free_port()}")))
    nodes[0].bootstrap()
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.close()


def _answers(node: Node, key: str) -> int:
    return httpx.get(node.proxy + "/mock/requests", headers={"apikey": key, "connection": "close"},
                     timeout=10).status_code


def test_a_write_on_one_node_is_applied_by_every_node_within_two_seconds(
        cluster: list[Node], echo_upstream: int) -> None:
    seed(cluster[0], f"http://127.0.0.1:{echo_upstream}")
    for node in cluster[1:]:
        wait_seeded(node, timeout=2.0)
    assert cluster[2].post("/consumers/", username="late").status_code == 201
    assert cluster[2].post("/consumers/late/key-auth", key="late-secret").status_code == 201
    started = time.monotonic()
    for node in cluster[:2]:
        node.wait_until(lambda n=node: _answers(n, "late-secret") == 200, timeout=2.0,
                        what="a consumer written on node 2")
    assert time.monotonic() - started < 2.5


def test_usage_on_every_node_adds_up_exactly_and_survives_a_killed_node(
        cluster: list[Node], echo_upstream: int) -> None:
    seed(cluster[0], f"http://127.0.0.1:{echo_upstream}")
    for node in cluster[1:]:
        wait_seeded(node, timeout=2.0)
    loads = [Load(node, KEYS, threads_per_key=1) for node in cluster]
    for load in loads:
        load.__enter__()
    time.sleep(1.5)
    cluster[1].kill_all()  # node 1 dies mid-load with its spool on disk
    time.sleep(1.0)
    for load in loads:
        load.__exit__(None, None, None)
    cluster[1].start()  # ... and replays it when it comes back

    answered: collections.Counter[tuple[str, int]] = collections.Counter()
    for load in loads:
        answered += load.received
    cut_off_bound = loads[1].in_flight_bound
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        got = metered(cluster[2])
        if all(got[k] >= v for k, v in answered.items()):
            break
        time.sleep(0.3)
    for key, count in answered.items():
        assert got[key] >= count, (key, got, answered)
    assert sum(got.values()) - sum(answered.values()) <= cut_off_bound
    # Every node reports the same ledger.
    assert metered(cluster[0]) == got
