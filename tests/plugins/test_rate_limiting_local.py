"""rate-limiting with the local policy on a real node of two workers: hundreds of concurrent
clients against a limit of N get exactly N calls through, every window boundary resets it, the
refusals are Kong's and billable meters them with their 429."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.billing.test_usage_e2e import admin
from tests.plugins.rate_limiting_load import Answer, hammer, wait_for_room
from tests.server.nodes import Node
from tests.server.test_metering_e2e import seeded_node
from tests.server.test_node import _all_workers_applied
from tollway.config import Settings

LIMIT = 50
TRIES = 300
CLIENTS = 200


@pytest.fixture
def database() -> str:
    return "sqlite"  # the counters are the node's: the database plays no part


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with seeded_node(settings, echo_upstream, workers=2) as running:
        yield running


def _limit(node: Node, config: dict[str, Any]) -> None:
    admin(node, "POST", "/routes/mock/plugins", {"name": "rate-limiting", "config": config})
    node.wait_until(lambda: _all_workers_applied(node), timeout=10, what="the plugin at every worker")


def test_two_workers_admit_exactly_the_limit_and_meter_the_refusals(node: Node) -> None:
    _limit(node, {"hour": LIMIT, "day": LIMIT * 10})
    wait_for_room(3600, 30)
    answers = hammer([node.proxy], "/mock/requests", TRIES, CLIENTS, {"apikey": "poppy-secret"})
    statuses = collections.Counter(answer.status for answer in answers)
    assert statuses == {200: LIMIT, 429: TRIES - LIMIT}
    admitted = [a for a in answers if a.status == 200]
    # each admitted call saw a distinct remaining count: none was counted twice, none skipped
    assert sorted(int(a.headers["X-RateLimit-Remaining-Hour"]) for a in admitted) == list(range(LIMIT))
    refused = next(a for a in answers if a.status == 429)
    assert refused.headers["X-RateLimit-Limit-Hour"] == str(LIMIT)
    assert refused.headers["X-RateLimit-Remaining-Hour"] == "0"
    assert refused.headers["X-RateLimit-Remaining-Day"] == str(LIMIT * 9)
    assert refused.headers["RateLimit-Limit"] == str(LIMIT) and refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600

    # another consumer has counters of its own
    other = httpx.get(node.proxy + "/mock/requests", headers={"apikey": "digit-secret"}, timeout=10)
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining-Hour"] == str(LIMIT - 1)

    node.wait_until(lambda: {row["status"]: row["requests"] for row in node.json(
        "/billable?period=day&consumer=poppy&route=mock")["data"]} == {200: LIMIT, 429: TRIES - LIMIT},
        timeout=10, what="billable's rows of the admitted and the refused calls")


def test_windows_fill_exactly_then_reset_at_each_boundary(node: Node) -> None:
    per_second = 5
    _limit(node, {"second": per_second, "error_code": 503, "error_message": "later"})
    answers: list[Answer] = []
    stop = threading.Event()
    load = threading.Thread(target=hammer, args=([node.proxy], "/mock/requests", 0, 32),
                            kwargs={"headers": {"apikey": "poppy-secret"}, "stop": stop, "answers": answers})
    load.start()
    try:  # until three windows filled (and so two boundaries were crossed under load)
        node.wait_until(lambda: sum(1 for a in list(answers) if a.status == 200
                                    and a.headers["X-RateLimit-Remaining-Second"] == "0") >= 3,
                        timeout=20, what="three full windows")
    finally:
        stop.set()
        load.join(30)
    refused = next(a for a in answers if a.status != 200)
    assert refused.status == 503 and refused.json() == {"message": "later"}
    assert {a.status for a in answers} == {200, 503}
    # In each window the admitted calls see remaining = limit-1, limit-2, ...: so how often a value
    # was seen counts the windows that admitted that many calls.
    seen = collections.Counter(int(a.headers["X-RateLimit-Remaining-Second"]) for a in answers if a.status == 200)
    windows, full = seen[per_second - 1], seen[0]
    assert set(seen) <= set(range(per_second))
    assert [seen[v] for v in range(per_second - 1, -1, -1)] == sorted(seen.values(), reverse=True)  # no duplicates
    assert full >= 3  # a window filled, the counter reset at the boundary, and another filled
    assert sum(seen.values()) <= per_second * windows
