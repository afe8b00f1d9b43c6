"""The rate-limiting handler's parts without a proxy: whom a call counts for (Kong's limit_by and
its fallbacks to the IP), Kong's headers, and what a handler does when its counters fail."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tollway.counters import SharedCounters
from tollway.plugins.base import Reply
from tollway.plugins.rate_limiting.handler import Figures, Handler, limit_headers
from tollway.plugins.rate_limiting.schema import SCHEMA
from tollway.plugins.rate_limiting.services import RateLimitingStatus
from tollway.proxy.call import HeaderBlock
from tollway.proxy.headers import join_lines
from tollway.store.entities.validation import validate


def config(**values: Any) -> dict[str, Any]:
    cleaned, errors = validate(SCHEMA["config"], values)
    assert not errors
    return cleaned


class FakeCall:
    def __init__(self, **fields: Any) -> None:
        self.consumer = fields.get("consumer")
        self.credential = fields.get("credential")
        self.service = fields.get("service")
        self.path = fields.get("path", "/")
        self.forwarded_ip = "203.0.113.7"
        self.headers = fields.get("headers", {})
        self.response: dict[str, str] = {}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def set_response_header(self, name: str, value: str) -> None:
        self.response[name] = value


def runtime(rows: list[dict[str, Any]] | None = None) -> Any:
    return SimpleNamespace(snapshot={"plugins": rows or []}, indexes={}, settings=None)


def handler(**values: Any) -> Handler:
    return Handler(config(**values), runtime())


def test_limit_by_falls_back_to_the_ip_as_kong() -> None:
    consumer, credential = {"id": "c1"}, {"id": "k1"}
    assert handler(minute=1).identify(FakeCall(consumer=consumer, credential=credential)) == "c1"
    assert handler(minute=1).identify(FakeCall(credential=credential)) == "k1"  # Kong: the credential's id
    assert handler(minute=1).identify(FakeCall()) == "203.0.113.7"
    assert handler(minute=1, limit_by="credential").identify(FakeCall(consumer=consumer)) == "203.0.113.7"
    assert handler(minute=1, limit_by="ip").identify(FakeCall(consumer=consumer)) == "203.0.113.7"
    assert handler(minute=1, limit_by="service").identify(FakeCall(service={"id": "s1"})) == "s1"
    by_header = handler(minute=1, limit_by="header", header_name="X-App")
    assert by_header.identify(FakeCall(headers={"x-app": "v2"})) == "v2"
    assert by_header.identify(FakeCall()) == "203.0.113.7"
    by_path = handler(minute=1, limit_by="path", path="/a")
    assert by_path.identify(FakeCall(path="/a")) == "/a" and by_path.identify(FakeCall(path="/b")) == "203.0.113.7"


def test_headers_name_the_tightest_window_and_retry_after_on_refusal() -> None:
    periods = ("second", "minute", "hour")
    headers = dict(limit_headers(periods, ["5", "10", "100"], [5, 10, 100], [2, 9, 9], [101, 160, 3600], 100,
                                 rejected=False))
    assert headers == {"X-RateLimit-Limit-Second": "5", "X-RateLimit-Remaining-Second": "3",
                       "X-RateLimit-Limit-Minute": "10", "X-RateLimit-Remaining-Minute": "1",
                       "X-RateLimit-Limit-Hour": "100", "X-RateLimit-Remaining-Hour": "91",
                       "RateLimit-Limit": "10", "RateLimit-Remaining": "1", "RateLimit-Reset": "60"}
    refused = dict(limit_headers(periods, ["5", "10", "100"], [5, 10, 100], [5, 10, 10], [101, 160, 3600], 100,
                                 rejected=True))
    # second and minute both have 0 left: the longer window is the tightest, as Kong's
    assert (refused["RateLimit-Limit"], refused["RateLimit-Reset"], refused["Retry-After"]) == ("10", "60", "60")


def test_a_refusal_is_kongs_reply_and_hidden_headers_stay_hidden(tmp_path: Path) -> None:
    counters = SharedCounters(tmp_path / "counters", 64, create=True)
    Handler.counters = counters
    try:
        limited = handler(second=1, minute=1, error_code=418, error_message="no tea")
        first, second = FakeCall(consumer={"id": "c"}), FakeCall(consumer={"id": "c"})
        assert limited.access(first) is None and first.response["X-RateLimit-Remaining-Minute"] == "0"
        reply = limited.access(second)
        assert reply == Reply(418, {"message": "no tea"}) and "Retry-After" in second.response
        hidden = handler(minute=1, hide_client_headers=True)
        third, fourth = FakeCall(), FakeCall()
        assert hidden.access(third) is None and isinstance(hidden.access(fourth), Reply)
        assert third.response == {} and fourth.response == {}
    finally:
        Handler.counters = None
        counters.close()


def test_without_counters_fault_tolerant_serves_and_otherwise_answers_500() -> None:
    Handler.figures = Figures("w1")
    assert handler(minute=1).access(FakeCall()) is None
    assert handler(minute=1, fault_tolerant=False).access(FakeCall()) == Reply(
        500, {"message": "An unexpected error occurred"})
    assert Handler.figures.take() == {"writer": "w1", "failing": True, "refused": 0, "store_failures": 2,
                                      "served_unlimited": 1}
    assert Handler.figures.take() is None  # nothing new since


def test_counters_are_the_plugins_own() -> None:
    conf = config(minute=1)
    rows = [{"id": "plugin-a", "name": "rate-limiting", "config": conf}]
    assert Handler(conf, runtime(rows)).scope == "plugin-a"
    assert Handler(config(minute=1), runtime(rows)).scope != "plugin-a"


@pytest.mark.parametrize("limits", [{"second": 3, "minute": 10, "hour": 10, "month": 2000.5},
                                    {"minute": 10**12}, {"second": 5, "hour": 10**12, "year": 10**15}])
@pytest.mark.parametrize("built", ["c", "python"])  # _headers.c where built, and Handler.python_lines()
def test_the_proxys_ready_made_header_block_says_what_limit_headers_says(built: str, limits: dict[str, float]) -> None:
    limited = handler(**limits)
    rng = random.Random(7)
    for _ in range(500):
        counts = [rng.choice([rng.randint(0, 12), rng.randint(0, 10**13)]) for _ in limited.periods]
        ends = [100 + rng.choice([rng.randint(-5, 5000), rng.randint(0, 10**9)]) for _ in limited.periods]
        rejected = rng.random() < 0.5
        plain = limit_headers(limited.periods, limited.shown_limits, limited.limits, counts, ends, 100, rejected)
        block = limited.header_block(counts, ends, 100, rejected)
        if built == "python":
            block = HeaderBlock(limited.python_lines(counts, ends, 100, rejected), block.names)
        items = block.items()
        assert [(name.decode(), value.decode()) for name, value in items] == plain
        assert block.lines == join_lines(items)
        assert block.names == frozenset(name.lower() for name, _ in items)
        assert len(block.names) == len(items)  # distinct: each replaces those of its name


def test_the_node_status_sums_the_workers_reports() -> None:
    status = RateLimitingStatus(SimpleNamespace())  # type: ignore[arg-type]
    status.add({"writer": "w1", "failing": True, "refused": 2, "store_failures": 1, "served_unlimited": 1})
    status.add({"writer": "w2", "failing": False, "refused": 3, "store_failures": 0, "served_unlimited": 0})
    assert status.status() == {"failing": True, "refused": 5, "store_failures": 1, "served_unlimited": 1}
    status.add({"writer": "w1", "failing": False, "refused": 0, "store_failures": 0, "served_unlimited": 0})
    assert status.status()["failing"] is False
