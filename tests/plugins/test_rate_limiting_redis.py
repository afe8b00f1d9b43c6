"""rate-limiting with the redis policy, with real processes: two nodes sharing one Redis admit
exactly N of hundreds of concurrent calls; a private redis-server stopped mid-load is served
through (fault_tolerant, said in GET /status) or answered 500, and a hung one costs at most
redis.timeout."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.plugins.rate_limiting_load import hammer, limit_on_mock, load_while, wait_for_room
from tests.plugins.redis_server import RedisServer
from tests.server.nodes import Node
from tests.server.test_metering_e2e import seed, seeded_node
from tollway.config import Settings

LIMIT = 60
TRIES = 300
CLIENTS = 200


def _nodes(settings: Settings, tmp_path: Path, count: int) -> list[Node]:
    return [Node(settings.with_overrides(prefix=str(tmp_path / f"node{i}"), workers=1,
                                         proxy_listen=f"127.0.0.1:{free_port()}",
                                         admin_listen=f"127.0.0.1:{free_port()}")) for i in range(count)]


@pytest.fixture
def two_nodes(pg_settings: Settings, tmp_path: Path, echo_upstream: int) -> Iterator[list[Node]]:
    nodes = _nodes(pg_settings, tmp_path, 2)
    nodes[0].bootstrap()
    try:
        for node in nodes:
            node.start()
        seed(nodes[0], f"http://127.0.0.1:{echo_upstream}")
        yield nodes
    finally:
        for node in nodes:
            node.close()


@pytest.fixture
def database() -> str:
    return "sqlite"


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with seeded_node(settings, echo_upstream, workers=1) as running:
        yield running



def test_two_nodes_sharing_redis_admit_exactly_the_limit(two_nodes: list[Node], redis_server: RedisServer) -> None:
    limit_on_mock(two_nodes, {"hour": LIMIT, "policy": "redis",
                              "redis": {"host": "127.0.0.1", "port": redis_server.port}})
    wait_for_room(3600, 30)
    answers = hammer([node.proxy for node in two_nodes], "/mock/requests", TRIES, CLIENTS,
                     {"apikey": "poppy-secret"})
    assert collections.Counter(a.status for a in answers) == {200: LIMIT, 429: TRIES - LIMIT}
    admitted = [a for a in answers if a.status == 200]
    assert sorted(int(a.headers["X-RateLimit-Remaining-Hour"]) for a in admitted) == list(range(LIMIT))
    assert next(a for a in answers if a.status == 429).json() == {"message": "API rate limit exceeded"}



def test_redis_stopped_mid_load_is_served_through_when_fault_tolerant(node: Node, redis_server: RedisServer) -> None:
    limit_on_mock([node], {"hour": 1_000_000, "policy": "redis", "fault_tolerant": True,
                    "redis": {"host": "127.0.0.1", "port": redis_server.port, "timeout": 300}})
    answers, stopped = load_while(node, redis_server.stop, 1.5)
    assert {a.status for a in answers} == {200}
    before = [a for a in answers if a.received < stopped]
    after = [a for a in answers if a.sent > stopped + 0.5]
    assert before and after
    assert all("X-RateLimit-Remaining-Hour" in a.headers for a in before)
    assert not any("X-RateLimit-Remaining-Hour" in a.headers for a in after)  # served without limits
    node.wait_until(lambda: node.json("/status").get("rate-limiting", {}).get("failing") is True,
                    timeout=5, what="GET /status saying Redis fails")
    # workers report their figures every second: wait for the report that counts the last calls
    node.wait_until(lambda: node.json("/status")["rate-limiting"]["served_unlimited"] >= len(after),
                    timeout=5, what="every call served without Redis counted in GET /status")
    assert "Redis failed" in node.log() and "fault_tolerant" in node.log()


def test_redis_stopped_mid_load_answers_500_when_not_fault_tolerant(node: Node, redis_server: RedisServer) -> None:
    limit_on_mock([node], {"hour": 1_000_000, "policy": "redis", "fault_tolerant": False,
                    "redis": {"host": "127.0.0.1", "port": redis_server.port, "timeout": 300}})
    answers, stopped = load_while(node, redis_server.stop, 1.5)
    after = [a for a in answers if a.sent > stopped + 0.5]
    assert after and {a.status for a in after} == {500}
    assert after[0].json() == {"message": "An unexpected error occurred"}
    assert {a.status for a in answers if a.received < stopped} <= {200}


def test_a_hung_redis_costs_at_most_its_timeout(node: Node, redis_server: RedisServer) -> None:
    limit_on_mock([node], {"hour": 1_000_000, "policy": "redis",
                    "redis": {"host": "127.0.0.1", "port": redis_server.port, "timeout": 250}})
    answers, paused = load_while(node, redis_server.pause, 1.5)
    after = [a for a in answers if a.sent > paused + 0.1]
    assert after and {a.status for a in after} == {200}
    # each waited for Redis no longer than its timeout (the rest is the proxy and the loaded machine)
    assert max(a.received - a.sent for a in after) < 0.25 + 1.0
