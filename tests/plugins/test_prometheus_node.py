"""The prometheus plugin on a real node with 2 workers: GET /metrics, parsed with prometheus_client's
own parser, counts what /billable counts for the same traffic; the status listener serves it."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, make_settings
from tests.server.nodes import Node
from tollway.config import Settings

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """Every sample of GET url/metrics, by sample name (`kong_http_requests_total`, `..._bucket`)."""
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = collections.defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def requests_by_labels(samples: Samples) -> collections.Counter[tuple[str, str, str, str]]:
    """kong_http_requests_total as (consumer, service, route, code) -> count."""
    counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    for labels, value in samples.get("kong_http_requests_total", ()):
        counts[(labels["consumer"], labels["service"], labels["route"], labels["code"])] += int(value)
    return counts


def billable(node: Node) -> collections.Counter[tuple[str, str, str, str]]:
    rows = node.json("/billable?period=month&size=1000")["data"]
    counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
    for row in rows:
        consumer = (row.get("consumer") or {}).get("username") or ""
        service = (row.get("service") or {}).get("name") or ""
        route = (row.get("route") or {}).get("name") or ""
        counts[(consumer, service, route, str(row["status"]))] += row["requests"]
    return counts


def wait_for(what: str, probe: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, f"{what}: not within {timeout}s"
            return value
        time.sleep(0.1)


def post(node: Node, path: str, data: dict[str, Any] | None = None, json: Any = None) -> dict[str, Any]:
    response = httpx.post(node.admin + path, data=data, json=json, timeout=10)
    assert response.status_code == 201, (path, response.text)
    return response.json()  # type: ignore[no-any-return]


def start(settings: Settings, **overrides: Any) -> Node:
    node = Node(settings.with_overrides(workers=2, **overrides))
    node.bootstrap()
    node.start()
    return node


def configured(node: Node, path: str) -> None:
    """Wait until the workers route `path` (written last, so every write before it is applied)."""
    wait_for(f"{path} routed", lambda: httpx.get(node.proxy + path, headers={"connection": "close"}).status_code != 404)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo_upstream: int) -> Iterator[Node]:
    """One node for the tests that only read: it serves send_traffic() once."""
    settings = make_settings(tmp_path_factory.mktemp("prometheus") / "prefix", "sqlite")
    n = start(settings, status_listen=f"127.0.0.1:{free_port()}")
    try:
        post(n, "/plugins", {"name": "billable"})
        post(n, "/plugins", json={"name": "prometheus", "config": {
            "per_consumer": True, "status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True}})
        post(n, "/services", {"name": "mock", "url": f"http://127.0.0.1:{echo_upstream}"})
        post(n, "/services/mock/routes", {"name": "keyed", "paths[]": "/keyed"})
        post(n, "/routes/keyed/plugins", {"name": "key-auth"})
        post(n, "/services/mock/routes", {"name": "open", "paths[]": "/open"})
        for user in ("poppy", "digit"):
            post(n, "/consumers", {"username": user})
            post(n, f"/consumers/{user}/key-auth", {"key": f"{user}-secret"})
        post(n, "/services/mock/routes", {"name": "ready", "paths[]": "/ready"})
        configured(n, "/ready")
        send_traffic(n)
        yield n
    finally:
        n.close()


def send_traffic(node: Node) -> None:
    with httpx.Client(base_url=node.proxy, timeout=10) as client:  # keep-alive: both workers may answer
        for _ in range(7):
            assert client.get("/keyed/anything", headers={"apikey": "poppy-secret"}).status_code == 200
        for _ in range(3):
            assert client.get("/keyed/status/404", headers={"apikey": "digit-secret"}).status_code == 404
        for _ in range(4):
            assert client.get("/keyed/anything").status_code == 401
        for _ in range(5):
            assert client.post("/open/anything", content=b"x" * 1000).status_code == 200
    for _ in range(6):  # new connections: spread over the workers
        assert httpx.get(node.proxy + "/open/anything", headers={"connection": "close"}).status_code == 200


def test_metrics_count_what_billable_counts(node: Node) -> None:
    want = collections.Counter({("poppy", "mock", "keyed", "200"): 7, ("digit", "mock", "keyed", "404"): 3,
                                ("", "mock", "keyed", "401"): 4, ("", "mock", "open", "200"): 11})

    def metered() -> bool:
        return billable(node) - collections.Counter({("", "mock", "ready", "200"): 10**9}) == want

    wait_for("/billable counts the traffic", metered)
    samples = wait_for("/metrics counts the traffic",
                       lambda: (s := scrape(node.admin)) and requests_by_labels(s) == billable(node) and s)
    sources = {(labels["route"], labels["code"]): labels["source"]
               for labels, _ in samples["kong_http_requests_total"]}
    assert sources[("keyed", "401")] == "kong" and sources[("keyed", "200")] == "service"
    assert sources[("keyed", "404")] == "service"


def test_metrics_hold_kong_histograms_bandwidth_and_node_figures(node: Node) -> None:
    samples = wait_for("the open route's 11 calls", lambda: (s := scrape(node.admin)) and sum(
        v for labels, v in s.get("kong_request_latency_ms_count", ()) if labels["route"] == "open") == 11 and s)
    for name, last_bound in (("kong_kong_latency_ms", "1000.0"), ("kong_upstream_latency_ms", "60000.0"),
                             ("kong_request_latency_ms", "60000.0")):
        buckets = [(labels["le"], value) for labels, value in samples[name + "_bucket"]
                   if labels["route"] == "open"]
        assert buckets[-2][0] == last_bound and buckets[-1] == ("+Inf", 11.0), (name, buckets)
        assert [value for _, value in buckets] == sorted(value for _, value in buckets)  # cumulative
    # The upstream never answered the 401s: no upstream latency for them, a Kong latency for each.
    keyed = {name: sum(v for labels, v in samples[name + "_count"] if labels["route"] == "keyed")
             for name in ("kong_kong_latency_ms", "kong_upstream_latency_ms", "kong_request_latency_ms")}
    assert keyed == {"kong_kong_latency_ms": 14, "kong_upstream_latency_ms": 10, "kong_request_latency_ms": 14}
    # Kong's name, kong_bandwidth_bytes, which the parser reads as a counter's kong_bandwidth_bytes_total.
    assert "\nkong_bandwidth_bytes{" in httpx.get(node.admin + "/metrics").text
    bandwidth = {(labels["route"], labels["direction"], labels["consumer"]): value
                 for labels, value in samples["kong_bandwidth_bytes_total"]}
    assert bandwidth[("open", "ingress", "")] > 5 * 1000
    assert bandwidth[("keyed", "egress", "poppy")] > 0
    def states() -> dict[str, float]:
        return {labels["state"]: value for labels, value in scrape(node.admin)["kong_nginx_connections_total"]}

    assert set(states()) == {"accepted", "active", "handled", "reading", "writing", "waiting", "total"}
    # The workers' server counters come every second, apart from the plugin's reports.
    wait_for("25 requests and 7 connections", lambda: (got := states())["total"] >= 25 and got["accepted"] >= 7)
    assert samples["kong_datastore_reachable"] == [({}, 1.0)]
    assert samples["tollway_workers"] == [({}, 2.0)]
    for name in ("tollway_spool_bytes", "tollway_flush_lag_seconds", "tollway_flush_duration_seconds",
                 "tollway_ledger_calls_committed_total", "tollway_ledger_rows_committed_total",
                 "tollway_spool_oldest_waiting_seconds"):
        assert name in samples, name
    assert samples["tollway_ledger_calls_committed_total"][0][1] >= 1


def test_status_listener_serves_metrics_and_status_read_only(node: Node) -> None:
    status_url = f"http://{node.settings.status_listen}"
    wait_for("/metrics on the status listener", lambda: requests_by_labels(scrape(status_url)))
    status = httpx.get(status_url + "/status", timeout=10)
    assert status.status_code == 200 and status.json()["database"] == {"reachable": True}
    assert status.json()["server"]["total_requests"] >= 1
    assert httpx.post(status_url + "/metrics", timeout=10).status_code == 405
    missing = httpx.get(status_url + "/consumers", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"message": "Not found"}
    assert httpx.post(status_url + "/consumers", data={"username": "x"}, timeout=10).status_code == 404


def test_status_listener_is_off_by_default_and_per_consumer_off_or_disabled_counts_no_consumer(
        sqlite_settings: Settings, echo_upstream: int) -> None:
    assert sqlite_settings.status_listen == "off"
    node = start(sqlite_settings)
    try:
        assert "status on off" in node.log()
        post(node, "/services", {"name": "mock", "url": f"http://127.0.0.1:{echo_upstream}"})
        for name in ("counted", "disabled", "bare"):
            post(node, "/services/mock/routes", {"name": name, "paths[]": f"/{name}"})
        post(node, "/routes/counted/plugins", {"name": "key-auth"})
        post(node, "/routes/counted/plugins", json={"name": "prometheus", "config": {"status_code_metrics": True}})
        post(node, "/routes/disabled/plugins", json={"name": "prometheus", "enabled": False,
                                                    "config": {"status_code_metrics": True}})
        post(node, "/consumers", {"username": "poppy"})
        post(node, "/consumers/poppy/key-auth", {"key": "poppy-secret"})
        post(node, "/services/mock/routes", {"name": "ready", "paths[]": "/ready"})
        configured(node, "/ready")
        for _ in range(4):
            for path in ("/counted/anything", "/disabled/anything", "/bare/anything"):
                response = httpx.get(node.proxy + path, headers={"apikey": "poppy-secret", "connection": "close"})
                assert response.status_code == 200
        want = {("", "mock", "counted", "200"): 4}  # the consumer label empty; nothing of the other routes
        samples = wait_for(f"exactly {want}", lambda: (s := scrape(node.admin)) and requests_by_labels(s) == want and s)
        assert "kong_bandwidth_bytes_total" not in samples and "kong_request_latency_ms_count" not in samples
    finally:
        node.close()


def test_every_metric_of_the_grafana_dashboard_is_exported(node: Node) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-tollway.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(?:kong|tollway)_[a-z_]+", target["expr"])}
    exported = set(wait_for("latency histograms", lambda: (s := scrape(node.admin)) and
                            "kong_kong_latency_ms_bucket" in s and s))
    exported.add("kong_bandwidth_bytes")  # the text's name; the parser reads it as kong_bandwidth_bytes_total
    assert len(queried) >= 15 and queried <= exported, queried - exported


def test_a_reload_loses_no_count_the_old_workers_made(node: Node) -> None:
    """Draining workers send their last counts before they exit: /metrics still equals /billable."""
    from tests.server.nodes import tollway

    send_traffic(node)
    result = tollway(node.settings, "reload", env=node.env)
    assert result.returncode == 0, result.stderr
    send_traffic(node)
    want = collections.Counter({("poppy", "mock", "keyed", "200"): 21, ("digit", "mock", "keyed", "404"): 9,
                                ("", "mock", "keyed", "401"): 12, ("", "mock", "open", "200"): 33})
    wait_for("/billable counts the three rounds",
             lambda: collections.Counter({k: v for k, v in billable(node).items() if k[2] != "ready"}) == want)
    wait_for("/metrics equals /billable", lambda: requests_by_labels(scrape(node.admin)) == billable(node))
