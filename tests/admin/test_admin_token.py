"""admin_token: every Admin API call carries it (Tollway-Admin-Token or Kong-Admin-Token), or is 401."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.conftest import AdminServer, _bootstrap, serve
from tollway.admin.guard import HEADER, INVALID, AdminTokenGuard, token_headers
from tollway.config import Settings

TOKEN = "s3cret-admin-token"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[AdminServer]:
    guarded_settings = settings.with_overrides(admin_token=TOKEN)
    asyncio.run(_bootstrap(guarded_settings))
    yield from serve(guarded_settings)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_without_the_token_every_path_is_401_in_kong_words(guarded: AdminServer) -> None:
    api = guarded.client
    for method, path in [("GET", "/"), ("GET", "/status"), ("GET", "/consumers"), ("POST", "/consumers"),
                         ("DELETE", "/consumers/x"), ("GET", "/openapi.json"), ("GET", "/nothing/here"),
                         ("GET", "/billable"), ("OPTIONS", "/services")]:
        answer = api.request(method, path)
        assert answer.status_code == 401, (method, path)
        assert answer.json() == INVALID == {"message": "Invalid credentials. Token or User credentials required"}
        assert answer.headers["content-type"].startswith("application/json")
    assert api.get("/status", headers={HEADER: "wrong"}).status_code == 401
    assert api.get("/status", headers={HEADER: TOKEN + "x"}).status_code == 401
    assert api.get("/status", headers={HEADER: ""}).status_code == 401


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_with_the_token_in_either_header_calls_pass(guarded: AdminServer) -> None:
    api = guarded.client
    assert api.get("/status", headers=token_headers(TOKEN)).status_code == 200
    assert api.get("/status", headers={"Kong-Admin-Token": TOKEN}).status_code == 200
    assert api.get("/status", headers={"tollway-admin-token": TOKEN}).status_code == 200
    created = api.post("/consumers", json={"username": "u"}, headers=token_headers(TOKEN))
    assert created.status_code == 201
    assert guarded.changes == [1]
    document = api.get("/openapi.json", headers=token_headers(TOKEN)).json()
    assert document["components"]["securitySchemes"]["adminToken"]["name"] == HEADER
    assert "401" in document["paths"]["/consumers"]["get"]["responses"]


def test_without_a_token_configured_nothing_is_asked(api: httpx.Client) -> None:
    assert api.get("/status").status_code == 200
    assert "securitySchemes" not in api.get("/openapi.json").json()["components"]
    assert token_headers("") == {}


def test_the_comparison_takes_the_header_bytes_as_they_are() -> None:
    guard = AdminTokenGuard(lambda *a: None, TOKEN)  # type: ignore[arg-type]
    assert guard.allows({"headers": [(b"kong-admin-token", TOKEN.encode())]})
    assert not guard.allows({"headers": [(b"tollway-admin-token", TOKEN.upper().encode())]})
    assert not guard.allows({"headers": [(b"authorization", TOKEN.encode())]})
