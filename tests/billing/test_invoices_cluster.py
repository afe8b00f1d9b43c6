"""Two real nodes on one PostgreSQL database, both running their billing service every second at the
real time: every invoice is written once, every number taken once and none skipped."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.billing.test_usage_e2e import admin
from tests.conftest import free_port
from tests.server.nodes import Node
from tollway.config import Settings

CONSUMERS = 12
MONTHS = 6   # each subscription started six calendar months ago: an opening invoice and one per month since


@pytest.fixture
def nodes(pg_settings: Settings, tmp_path: Path) -> Iterator[list[Node]]:
    started = []
    try:
        for i in range(2):
            node = Node(pg_settings.with_overrides(
                prefix=str(tmp_path / f"node{i}"), workers=1, invoice_run_interval=1, invoice_grace_period=1,
                proxy_listen=f"127.0.0.1:{free_port()}", admin_listen=f"127.0.0.1:{free_port()}"))
            if i == 0:
                node.bootstrap()
            started.append(node.start())
        yield started
    finally:
        for node in started:
            node.close()


def months_ago(count: int) -> int:
    now = datetime.now(UTC)
    month = now.year * 12 + now.month - 1 - count
    return int(datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp())


def everything(node: Node) -> list[dict[str, Any]]:
    page = node.json("/invoices?size=1000")
    assert page["next"] is None
    return page["data"]  # type: ignore[no-any-return]


def test_two_nodes_billing_at_once_write_each_invoice_once_with_gapless_numbers(nodes: list[Node]) -> None:
    first, second = nodes
    admin(first, "POST", "/plans", {"name": "pro", "currency": "USD", "base_fee": "10"})
    started_at = months_ago(MONTHS)
    for i in range(CONSUMERS):   # half through each node, while both services run
        node = nodes[i % 2]
        admin(node, "POST", "/consumers", {"username": f"user{i}"})
        admin(node, "POST", f"/consumers/user{i}/subscriptions", {"plan": {"name": "pro"}, "started_at": started_at})
    expected = CONSUMERS * (MONTHS + 1)

    def all_finalized() -> bool:
        found = everything(first)
        return len(found) >= expected and all(item["status"] == "finalized" for item in found)

    first.wait_until(all_finalized, timeout=60, what=f"{expected} invoices finalized")
    first.wait_until(lambda: all(node.json("/status")["billing"]["runs"] >= 1 for node in nodes), timeout=15,
                     what="both nodes' billing services ran")
    found = everything(second)
    assert len(found) == expected
    per_period = collections.Counter((item["subscription"]["id"], item["period_start_epoch"]) for item in found)
    assert set(per_period.values()) == {1} and len(per_period) == expected
    assert sorted(item["number"] for item in found) == [f"INV-{n:06d}" for n in range(1, expected + 1)]
    # each: the month's fee in advance, 10.00 (no usage)
    assert {item["total"] for item in found} == {"10.00"}
    statuses = [node.json("/status")["billing"] for node in nodes]
    assert [status["failures"] for status in statuses] == [0, 0], statuses
