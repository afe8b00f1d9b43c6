"""schemathesis on billing's operations, with meters, plans, charges, entitlements and subscriptions in
place so that generated names and ids meet real ones: no 5xx, every 4xx JSON in Kong's shape."""

from __future__ import annotations

import os

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from tests.admin.conftest import AdminServer  # noqa: E402
from tests.admin.test_schemathesis import TOKEN, _problem, guarded  # noqa: E402, F401

BILLING_TAGS = {"meters", "plans", "charges", "entitlements", "subscriptions", "pricing", "invoices"}
EXAMPLES = {"sqlite": 8, "postgres": 4}


def _seed(base: str, session: requests.Session) -> None:
    service = session.post(f"{base}/services", json={"name": "s", "host": "example.com"}).json()
    session.post(f"{base}/consumers", json={"username": "c"})
    session.post(f"{base}/meters", json={"name": "m", "service": {"id": service["id"]}, "status": ["2xx"]})
    session.post(f"{base}/plans", json={"name": "p", "currency": "USD", "base_fee": "1"})
    session.post(f"{base}/plans/p/charges", json={"meter": {"name": "m"}, "model": "graduated", "tiers": [
        {"up_to": 10, "unit_price": "0"}, {"up_to": None, "unit_price": "0.5"}]})
    session.post(f"{base}/plans/p/entitlements", json={"meter": {"name": "m"}, "limit": 5, "period": "hour"})
    session.post(f"{base}/consumers/c/subscriptions", json={"plan": {"name": "p"}, "tz": "Asia/Kolkata"})


def test_billing_operations_answer_in_kong_shapes(guarded: AdminServer, database: str) -> None:  # noqa: F811
    base = f"http://127.0.0.1:{guarded.port}"
    session = requests.Session()
    session.headers["Tollway-Admin-Token"] = TOKEN
    _seed(base, session)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", headers={"Tollway-Admin-Token": TOKEN})
    examples = int(os.environ.get("TOLLWAY_TEST_FUZZ_EXAMPLES", EXAMPLES[database]))
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not BILLING_TAGS & set(operation.definition.raw.get("tags", ())):
            continue
        operations += 1
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, session=session, timeout=10)
            problem = _problem(response)
            if problem is not None:
                raise AssertionError(f"{case.method} {case.formatted_path} {case.body!r} -> {problem}")

        try:
            fuzz()
        except AssertionError as exc:
            failures.append(f"{operation.label}: {str(exc).splitlines()[0]}")
    assert operations > 40  # every billing endpoint, method by method
    assert not failures, "\n".join(failures)
