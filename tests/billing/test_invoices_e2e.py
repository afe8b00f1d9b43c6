"""Invoices from calls through a real proxy: a node meters two consumers on two plans in two zones,
`tollway invoices run` (real processes, the clock fixed with --at) bills the first week's fee in
advance and closes their periods; two runs at once bill each period once, a late flush lands in its
draft, and the totals are hand-computed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.billing.test_usage_e2e import admin
from tests.server.nodes import Node, node_env
from tests.server.test_metering_e2e import seeded_node
from tollway.config import Settings

GRACE = 2 * 86_400  # longer than the spread of the two zones' period ends (up to a day apart)


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with seeded_node(settings, echo_upstream, workers=1) as running:
        yield running


def bill(node: Node, at: int, runs: int = 1) -> list[str]:
    """`tollway invoices run --at AT`, `runs` processes at once; their outputs."""
    env = node_env(node.settings, TOLLWAY_INVOICE_GRACE_PERIOD=str(GRACE))
    procs = [subprocess.Popen([sys.executable, "-m", "tollway", "invoices", "run", "--at", str(at)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(runs)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def calls(node: Node, key: str, count: int) -> None:
    with httpx.Client(base_url=node.proxy, timeout=10) as proxy:
        assert [proxy.get("/mock/requests", headers={"apikey": key}).status_code for _ in range(count)] == [200] * count


def metered(node: Node, consumer: str, units: int) -> dict[str, Any]:
    node.wait_until(lambda: node.json(f"/consumers/{consumer}/usage")["meters"][0]["units"] == units, timeout=10,
                    what=f"{units} calls of {consumer} metered")
    return node.json(f"/consumers/{consumer}/usage")  # type: ignore[no-any-return]


def invoices(node: Node) -> dict[str, dict[str, Any]]:
    """Each consumer's latest invoice."""
    found = sorted(node.json("/invoices")["data"], key=lambda item: item["period_start_epoch"])
    return {item["customer"]["username"]: item for item in found}


def test_traffic_through_the_proxy_becomes_exact_invoices(node: Node) -> None:
    admin(node, "POST", "/meters", {"name": "calls", "service": {"name": "mock"}})
    admin(node, "POST", "/plans", {"name": "pro", "currency": "USD", "interval": "week",
                                   "billing_anchor": "anniversary", "base_fee": "7"})
    admin(node, "POST", "/plans/pro/charges", {"meter": {"name": "calls"}, "model": "graduated", "tiers": [
        {"up_to": 5, "unit_price": "0"}, {"up_to": None, "unit_price": "0.125"}]})
    admin(node, "POST", "/plans", {"name": "yen", "currency": "JPY", "interval": "week",
                                   "billing_anchor": "anniversary", "base_fee": "700"})
    admin(node, "POST", "/plans/yen/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.5"})
    hour = int(time.time()) // 3600 * 3600   # a whole hour in both zones: the ledger's hour rows hold the start
    admin(node, "POST", "/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "tz": "America/New_York",
                                                           "started_at": hour})
    admin(node, "POST", "/consumers/digit/subscriptions", {"plan": {"name": "yen"}, "tz": "Asia/Tokyo",
                                                           "started_at": hour})
    calls(node, "poppy-secret", 8)
    calls(node, "digit-secret", 5)
    ends = [metered(node, "poppy", 8)["period"]["end_epoch"], metered(node, "digit", 5)["period"]["end_epoch"]]
    closed = max(ends) + 10
    # the opening invoices (the first week's fee in advance), by this run or the node's own billing service
    bill(node, min(ends) - 60)
    openings = invoices(node)
    assert [(line["kind"], line["amount"]) for line in openings["poppy"]["lines"]] == [("base_fee", "7.00")]
    assert [(line["kind"], line["amount"]) for line in openings["digit"]["lines"]] == [("base_fee", "700")]
    assert len(node.json("/invoices")["data"]) == 2
    # two runs at once: each period billed once, whichever run got there first
    outputs = bill(node, closed, runs=2)
    assert sum(int(output.split()[0]) for output in outputs) == 2, outputs
    assert len(node.json("/invoices")["data"]) == 4
    # usage of the period flushed after the drafts were made (a node that was behind) lands in them
    calls(node, "poppy-secret", 3)
    metered(node, "poppy", 11)
    bill(node, closed + 60)
    drafts = invoices(node)
    assert drafts["poppy"]["status"] == "draft" and drafts["poppy"]["lines"][0]["quantity"] == "11"
    bill(node, closed + GRACE + 60)
    final = invoices(node)
    # poppy: 11 calls, 5 free, 6 × 0.125 = 0.75, and the next week's fee 7.00: 7.75 USD (the first
    # week's fee, billed in advance, was whole: it started on the period's first local day).
    # digit: 5 × 0.5 = 2.5 -> 3 yen (half up), and the next week's 700 yen: 703 JPY.
    assert [(line["kind"], line["amount"]) for line in final["poppy"]["lines"]] == [("usage", "0.75"),
                                                                                    ("base_fee", "7.00")]
    assert (final["poppy"]["total"], final["poppy"]["total_minor"], final["poppy"]["currency"]) == ("7.75", 775, "USD")
    assert (final["digit"]["total"], final["digit"]["total_minor"], final["digit"]["currency"]) == ("703", 703, "JPY")
    everything = node.json("/invoices")["data"]
    assert sorted(item["number"] for item in everything) == [f"INV-{n:06d}" for n in range(1, 5)]
    assert {item["status"] for item in everything} == {"finalized"}
    assert final["poppy"]["period_start_epoch"] in ends and final["poppy"]["tz"] == "America/New_York"
    assert bill(node, closed + GRACE + 120) == ["0 draft(s) created, 0 refreshed, 0 finalized, 0 skipped"]
    # the node's own billing service ran (at the real time, when no period had ended)
    status = node.json("/status")["billing"]
    assert status["runs"] >= 1 and status["failures"] == 0
