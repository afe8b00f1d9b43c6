"""Money from calls through a real proxy: a node (master + 2 workers) meters the calls into the ledger,
and GET /consumers/{consumer}/usage prices exactly what /billable counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.nodes import Node
from tests.server.test_metering_e2e import seeded_node
from tollway.config import Settings


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with seeded_node(settings, echo_upstream, workers=2) as running:
        yield running


def admin(node: Node, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.request(method, node.admin + path, json=body, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def test_usage_prices_the_calls_the_proxy_metered(node: Node) -> None:
    admin(node, "POST", "/meters", {"name": "ok-calls", "service": {"name": "mock"}, "status": ["2xx"]})
    admin(node, "POST", "/meters", {"name": "all-calls", "route": {"name": "mock"}})
    admin(node, "POST", "/plans", {"name": "pro", "currency": "USD"})
    admin(node, "POST", "/plans/pro/charges", {"meter": {"name": "ok-calls"}, "model": "graduated", "tiers": [
        {"up_to": 5, "unit_price": "0"}, {"up_to": None, "unit_price": "0.125"}]})
    admin(node, "POST", "/plans/pro/charges", {"meter": {"name": "all-calls"}, "model": "standard",
                                               "unit_price": "0.005"})
    admin(node, "POST", "/plans/pro/entitlements", {"meter": {"name": "ok-calls"}, "limit": 5, "period": "day",
                                                    "enforcement": "soft"})
    admin(node, "POST", "/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "tz": "America/New_York"})
    with httpx.Client(base_url=node.proxy, timeout=10) as proxy:
        statuses = [proxy.get("/mock/requests", headers={"apikey": "poppy-secret"}).status_code for _ in range(7)]
        statuses += [proxy.get("/mock/status/404", headers={"apikey": "poppy-secret"}).status_code for _ in range(2)]
        statuses += [proxy.get("/mock/requests", headers={"apikey": "digit-secret"}).status_code for _ in range(4)]
        statuses += [proxy.get("/mock/requests").status_code for _ in range(3)]
    assert statuses == [200] * 7 + [404] * 2 + [200] * 4 + [401] * 3

    def metered() -> dict[str, Any]:
        return node.json("/consumers/poppy/usage")

    node.wait_until(lambda: sum(m["units"] for m in metered()["meters"]) == 16, timeout=10,
                    what="poppy's calls metered")
    answer = metered()
    # ok-calls: 7 of 2xx, 2 past the 5 free at 0.125 = 0.25; all-calls: 9 at 0.005 = 0.045 -> 0.05 (half up)
    assert [(m["meter"], m["units"], m["amount"], m["amount_minor"]) for m in answer["meters"]] == [
        ("all-calls", 9, "0.05", 5), ("ok-calls", 7, "0.25", 25)]
    assert (answer["total"], answer["total_minor"], answer["currency"]) == ("0.30", 30, "USD")
    assert [(e["meter"], e["limit"], e["used"], e["remaining"], e["overage"]) for e in answer["entitlements"]] == [
        ("ok-calls", 5, 7, 0, 2)]  # soft: served, and the overage priced
    assert answer["period"]["start"].endswith(("-05:00", "-04:00"))  # New York's local month
    billable = node.json("/billable?period=month&consumer=poppy")["data"]
    assert sum(row["requests"] for row in billable) == 9  # the same calls /billable counts
