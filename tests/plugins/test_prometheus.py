"""The prometheus plugin's parts without a node: its schema on the Admin API (Kong's fields and
defaults), the counts of a call, and the histograms checked against prometheus_client's own."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tollway.plugins.prometheus.exporter import NodeMetrics, render
from tollway.plugins.prometheus.handler import Handler
from tollway.plugins.prometheus.recorder import KONG_LATENCY_BUCKETS, Recorder, Tally
from tollway.proxy.call import Call as ProxyCall

KONG_DEFAULTS = {"per_consumer": False, "status_code_metrics": False, "latency_metrics": False,
                 "bandwidth_metrics": False, "upstream_health_metrics": False}


def test_config_has_kong_fields_all_off_by_default(api: httpx.Client) -> None:
    created = api.post("/plugins", json={"name": "prometheus"})
    assert created.status_code == 201, created.text
    assert created.json()["config"] == KONG_DEFAULTS


def test_a_field_that_is_not_a_boolean_is_a_schema_violation_naming_each(api: httpx.Client) -> None:
    answer = api.post("/plugins", json={"name": "prometheus", "config": {"per_consumer": "yes please",
                                                                        "latency_metrics": 3, "nope": True}})
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == 2 and body["name"] == "schema violation"
    assert body["fields"]["config"] == {"per_consumer": "expected a boolean", "latency_metrics": "expected a boolean",
                                        "nope": "unknown field"}


def test_metrics_is_served_on_the_admin_api_as_prometheus_text(api: httpx.Client) -> None:
    answer = api.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(answer.text)}
    assert {"kong_nginx_connections_total", "kong_datastore_reachable", "kong_node_info"} <= names
    # Kong's 07-optional_fields_spec: no per-request family before anything was counted.
    assert not names & {"kong_http_requests", "kong_kong_latency_ms", "kong_upstream_latency_ms",
                        "kong_request_latency_ms", "kong_bandwidth_bytes", "kong_upstream_target_health"}
    states = {sample.labels["state"] for family in text_string_to_metric_families(answer.text)
              if family.name == "kong_nginx_connections_total" for sample in family.samples}
    assert states == {"accepted", "active", "handled", "reading", "total", "waiting", "writing"}


def _call(status: int = 200, consumer: dict[str, Any] | None = None, service: dict[str, Any] | None = None,
          upstream_answered: bool = True, routed_to_service: bool = True, route_id: str = "r-id") -> ProxyCall:
    """A finished call as the meter phase sees it: the proxy's own Call, its cycle's times set."""
    call = ProxyCall(b"GET", "/p", "", [], "127.0.0.1", started_at=0.0, received_at=1.0)
    if service is None and routed_to_service:
        service = {"id": "s-id", "name": "svc", "host": "h"}
    call.service, call.route, call.consumer, call.status = service, {"id": route_id, "name": None}, consumer, status
    call.request_bytes, call.response_bytes = 100, 250
    call.sent_at, call.first_byte_at = 1.5, (2.0 if upstream_answered else 0.0)
    return call


def _handler(**conf: bool) -> Handler:
    handler = Handler({**KONG_DEFAULTS, **conf}, runtime=SimpleNamespace())
    Handler.recorder = Recorder()
    return handler


def test_a_configuration_that_counts_nothing_leaves_the_plugin_off_the_hot_path() -> None:
    assert _handler().phases() == frozenset()
    assert _handler(per_consumer=True, upstream_health_metrics=True).phases() == frozenset()
    assert _handler(bandwidth_metrics=True).phases() == {"meter"}


def test_labels_are_kongs_and_the_consumer_only_with_per_consumer() -> None:
    handler = _handler(status_code_metrics=True, bandwidth_metrics=True)
    poppy = {"id": "c1", "username": "poppy"}
    handler.meter(_call(consumer=poppy))
    handler.meter(_call(status=401, upstream_answered=False))
    handler.meter(_call(service={"host": "example.com"}, route_id="r2-id"))
    handler.meter(_call(routed_to_service=False))  # no service: not counted, as Kong
    report = Handler.recorder.take()
    assert report is not None
    assert sorted(report["requests"]) == [["example.com", "r2-id", 200, "service", "", 1],
                                          ["svc", "r-id", 200, "service", "", 1], ["svc", "r-id", 401, "kong", "", 1]]
    assert ["svc", "r-id", "egress", "", 500] in report["bandwidth"]
    assert report["latency"] == {"kong": [], "upstream": [], "request": []}
    per_consumer = _handler(status_code_metrics=True, per_consumer=True)
    per_consumer.meter(_call(consumer=poppy))
    report = Handler.recorder.take()
    assert report is not None and report["requests"] == [["svc", "r-id", 200, "service", "poppy", 1]]


def test_take_hands_over_the_counts_once() -> None:
    handler = _handler(status_code_metrics=True)
    handler.meter(_call())
    report = Handler.recorder.take()
    assert report is not None and report["requests"] == [["svc", "r-id", 200, "service", "", 1]]
    assert Handler.recorder.take() is None


def test_histograms_summed_over_workers_equal_prometheus_clients_own() -> None:
    """Values from two workers, added up by the master, render as a prometheus_client Histogram
    that observed every value renders."""
    rng = random.Random(7)
    values = [rng.choice([0.0, 1.0, 7.0, 1000.0, 1000.5]) if i % 5 == 0 else rng.expovariate(1 / 40)
              for i in range(2000)]
    node = NodeMetrics()
    for worker_values in (values[:1200], values[1200:]):
        recorder = Recorder()
        recorder.tallies["r-id"] = {"": (tally := Tally("svc", "route", ""))}
        for value in worker_values:
            tally.kong.observe(value)
        report = recorder.take()
        assert report is not None
        node.add(report)
    reference = CollectorRegistry()
    plain = Histogram("kong_kong_latency_ms", "reference", ("service", "route"), registry=reference,
                      buckets=KONG_LATENCY_BUCKETS)
    for value in values:
        plain.labels("svc", "route").observe(value)

    def samples(text: str) -> dict[tuple[str, str], float]:
        return {(sample.name, sample.labels.get("le", "")): sample.value
                for family in text_string_to_metric_families(text) if family.name == "kong_kong_latency_ms"
                for sample in family.samples if not sample.name.endswith("_created")}

    ours = samples(render(node, {}, True).decode())
    theirs = samples(generate_latest(reference).decode())
    assert len(ours) == len(KONG_LATENCY_BUCKETS) + 3
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-6 * max(1.0, value), key


def test_latencies_split_a_call_between_the_upstream_and_kong() -> None:
    handler = _handler(latency_metrics=True)
    call = _call()
    call.started_at, call.sent_at, call.first_byte_at = time.time() - 0.040, 1.500, 1.520  # 40 ms, 20 upstream
    handler.meter(call)
    report = Handler.recorder.take()
    assert report is not None
    (_, _, upstream), = report["latency"]["upstream"]
    (_, _, request), = report["latency"]["request"]
    (_, _, kong), = report["latency"]["kong"]
    assert upstream[:1] == [1.0] and abs(upstream[-1] - 20.0) < 1e-6      # 20 ms: in le=25
    assert request[1] == 1.0 and 40.0 <= request[-1] < 50.0               # in le=50
    assert kong[7] + kong[8] == 1.0 and 20.0 <= kong[-1] < 40.0           # 20 ms and what the test took: le=30 or 50
