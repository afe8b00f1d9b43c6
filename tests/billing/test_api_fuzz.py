"""schemathesis on billing's operations, with meters, plans, charges, entitlements and subscriptions in
place so that generated names and ids meet real ones: held to the same checks as the whole Admin API
(tests/admin/conformance.py), with more examples per operation."""

from __future__ import annotations

import pytest
import requests

pytest.importorskip("schemathesis")

from tests.admin.conformance import conform, examples  # noqa: E402
from tests.admin.conftest import AdminServer  # noqa: E402
from tests.admin.test_schemathesis import _seed as _seed_admin  # noqa: E402
from tests.admin.test_schemathesis import admin_session, guarded  # noqa: E402, F401

BILLING_TAGS = {"meters", "plans", "charges", "entitlements", "subscriptions", "pricing", "invoices"}
EXAMPLES = {"sqlite": 6, "postgres": 3}


def _seed(base: str, session: requests.Session) -> None:
    _seed_admin(base, session)
    service = session.get(f"{base}/services/s").json()
    session.post(f"{base}/meters", json={"name": "m", "service": {"id": service["id"]}, "status": ["2xx"]})
    session.post(f"{base}/meters", json={"name": "m2"})
    for name in ("p", "p2"):
        session.post(f"{base}/plans", json={"name": name, "currency": "USD", "base_fee": "1"})
        session.post(f"{base}/plans/{name}/charges", json={"meter": {"name": "m"}, "model": "graduated", "tiers": [
            {"up_to": 10, "unit_price": "0"}, {"up_to": None, "unit_price": "0.5"}]})
        session.post(f"{base}/plans/{name}/entitlements", json={"meter": {"name": "m"}, "limit": 5, "period": "hour"})
    session.post(f"{base}/consumers/c/subscriptions", json={"plan": {"name": "p"}, "tz": "Asia/Kolkata"})
    session.post(f"{base}/consumers/c2/subscriptions", json={"plan": {"name": "p2"}})


def test_billing_answers_agree_with_the_openapi_document(guarded: AdminServer, database: str) -> None:  # noqa: F811
    base = f"http://127.0.0.1:{guarded.port}"
    session = admin_session()
    _seed(base, session)
    run = conform(base, session, examples(EXAMPLES[database]),
                  select=lambda operation: bool(BILLING_TAGS & set(operation.definition.raw.get("tags", ()))))
    print(run.report())
    assert run.operations > 40  # every billing endpoint, method by method
    assert not run.mismatches, run.report()
