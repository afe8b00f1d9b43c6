"""schemathesis against /openapi.json, on a real port with an admin token: every operation, valid
and invalid inputs, and every answer as the document says (tests/admin/conformance.py): no 5xx,
status codes, content types, bodies and headers as documented, valid input accepted, invalid input
refused, every 4xx in Kong's shape. Any mismatch fails the test, listed with a request that shows it.

Bounded (a few examples per operation and mode, derandomized, no shrinking) to keep CI short;
TOLLWAY_TEST_FUZZ_EXAMPLES raises it for a longer local run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import requests

pytest.importorskip("schemathesis")

from tests.admin.conformance import TOKEN, conform, examples  # noqa: E402
from tests.admin.conftest import AdminServer, _bootstrap, serve  # noqa: E402
from tollway.config import Settings  # noqa: E402

EXAMPLES = {"sqlite": 3, "postgres": 2}


@pytest.fixture
def guarded(settings: Settings) -> Iterator[AdminServer]:
    guarded_settings = settings.with_overrides(admin_token=TOKEN)
    asyncio.run(_bootstrap(guarded_settings))
    yield from serve(guarded_settings)


def admin_session() -> requests.Session:
    session = requests.Session()
    session.headers["Tollway-Admin-Token"] = TOKEN
    return session


def _seed(base: str, session: requests.Session) -> None:
    """A few entities, so that generated names and ids sometimes meet existing ones, and two of
    each listed kind with tags, so that listings give the offsets the fuzzer pages with."""
    service = session.post(f"{base}/services", json={"name": "s", "host": "example.com", "tags": ["t1"]}).json()
    session.post(f"{base}/services", json={"name": "s2", "host": "example.com"})
    session.post(f"{base}/routes", json={"name": "r", "paths": ["/r"], "service": {"id": service["id"]}})
    session.post(f"{base}/consumers", json={"username": "c", "tags": ["t1", "t2"]})
    session.post(f"{base}/consumers", json={"username": "c2", "tags": ["t1"]})
    session.post(f"{base}/consumers/c/key-auth", json={"key": "k"})
    session.post(f"{base}/plugins", json={"name": "key-auth", "route": None})


def test_answers_agree_with_the_openapi_document(guarded: AdminServer, database: str) -> None:
    base = f"http://127.0.0.1:{guarded.port}"
    session = admin_session()
    _seed(base, session)
    run = conform(base, session, examples(EXAMPLES[database]))
    print(run.report())
    assert run.operations > 60  # every generated endpoint, method by method
    assert not run.mismatches, run.report()
