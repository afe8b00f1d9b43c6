"""schemathesis against /openapi.json, on a real port with an admin token: every operation, valid
and invalid inputs, no 5xx anywhere, and every 4xx is JSON in Kong's shape (has "message").

Bounded (a few examples per operation and mode, no shrinking) so that one database takes
about ten seconds; TOLLWAY_TEST_FUZZ_EXAMPLES raises it for a longer local run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from tests.admin.conftest import AdminServer, _bootstrap, serve  # noqa: E402
from tollway.config import Settings  # noqa: E402

TOKEN = "fuzz-admin-token"
EXAMPLES = {"sqlite": 5, "postgres": 3}


@pytest.fixture
def guarded(settings: Settings) -> Iterator[AdminServer]:
    guarded_settings = settings.with_overrides(admin_token=TOKEN)
    asyncio.run(_bootstrap(guarded_settings))
    yield from serve(guarded_settings)


def _seed(base: str, session: requests.Session) -> None:
    """A few entities, so that generated names and ids sometimes meet existing ones."""
    service = session.post(f"{base}/services", json={"name": "s", "host": "example.com"}).json()
    session.post(f"{base}/routes", json={"name": "r", "paths": ["/r"], "service": {"id": service["id"]}})
    session.post(f"{base}/consumers", json={"username": "c", "tags": ["t1", "t2"]})
    session.post(f"{base}/consumers", json={"username": "c2", "tags": ["t1"]})
    session.post(f"{base}/consumers/c/key-auth", json={"key": "k"})
    session.post(f"{base}/plugins", json={"name": "key-auth", "route": None})


def _problem(response: requests.Response) -> str | None:
    """What is wrong with an answer, or None."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return f"{response.status_code} without a message: {response.text[:200]}"
    return None


def test_no_server_errors_and_kong_error_shapes(guarded: AdminServer, database: str) -> None:
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
    assert operations > 60  # every generated endpoint, method by method
    assert not failures, "\n".join(failures)
