"""Hard entitlements at the gate, with real processes: two workers admit exactly a plan's limit
under concurrency, answer the rest 429 with Kong's rate-limit headers, and count none of them;
a soft entitlement is never enforced."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.billing.test_usage_e2e import admin
from tests.server.nodes import Node
from tests.server.test_metering_e2e import seeded_node
from tests.server.test_node import _all_workers_applied
from tollway.config import Settings

LIMIT = 40
TRIES = 160


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with seeded_node(settings, echo_upstream, workers=2) as running:
        yield running


def _hammer(node: Node, key: str, tries: int, threads: int = 16) -> tuple[collections.Counter[int], list[Any]]:
    statuses: collections.Counter[int] = collections.Counter()
    refusals: list[Any] = []
    lock = threading.Lock()
    per_thread = tries // threads

    def run() -> None:
        with httpx.Client(base_url=node.proxy, timeout=30) as client:
            for _ in range(per_thread):
                response = client.get("/mock/requests", headers={"apikey": key})
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 429 and len(refusals) < 3:
                        refusals.append(response)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return statuses, refusals


def test_two_workers_admit_exactly_the_hard_limit_and_refuse_the_rest_with_kongs_headers(node: Node) -> None:
    admin(node, "POST", "/meters", {"name": "calls", "route": {"name": "mock"}, "status": ["2xx"]})
    admin(node, "POST", "/plans", {"name": "metered", "currency": "USD"})
    admin(node, "POST", "/plans/metered/entitlements", {"meter": {"name": "calls"}, "limit": LIMIT,
                                                        "period": "day", "enforcement": "hard"})
    admin(node, "POST", "/plans", {"name": "generous", "currency": "USD"})
    admin(node, "POST", "/plans/generous/entitlements", {"meter": {"name": "calls"}, "limit": LIMIT,
                                                         "period": "day", "enforcement": "soft"})
    admin(node, "POST", "/consumers/poppy/subscriptions", {"plan": {"name": "metered"}, "tz": "Europe/Berlin"})
    admin(node, "POST", "/consumers/digit/subscriptions", {"plan": {"name": "generous"}})
    node.wait_until(lambda: _all_workers_applied(node), timeout=10, what="the subscriptions at every worker")

    statuses, refusals = _hammer(node, "poppy-secret", TRIES)
    assert statuses == {200: LIMIT, 429: TRIES - LIMIT}
    refused = refusals[0]
    assert refused.json() == {"message": "API rate limit exceeded"}
    assert refused.headers["X-RateLimit-Limit-Day"] == str(LIMIT)
    assert refused.headers["X-RateLimit-Remaining-Day"] == "0"
    assert refused.headers["RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) >= 1

    soft, _ = _hammer(node, "digit-secret", 64)
    assert soft == {200: 64}  # soft: served, the overage priced

    def ledger() -> dict[int, int]:
        rows = node.json("/billable?period=day&consumer=poppy&route=mock")["data"]
        return {row["status"]: row["requests"] for row in rows}

    # The refusals came after the admitted calls: a flush may land them a second later.
    node.wait_until(lambda: ledger() == {200: LIMIT, 429: TRIES - LIMIT}, timeout=15,
                    what=f"{LIMIT} calls admitted and {TRIES - LIMIT} refused in the ledger")
    assert node.json("/consumers/poppy/usage")["entitlements"][0]["used"] == LIMIT
