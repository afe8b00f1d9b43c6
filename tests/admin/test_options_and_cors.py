"""OPTIONS on every endpoint and CORS headers on every answer, as Kong's Admin API
(spec/02-integration/04-admin_api/02-kong_routes_spec and 23-cors_spec)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.admin.conftest import AdminServer, _bootstrap, serve
from tollway.admin.guard import HEADER
from tollway.config import Settings

TOKEN = "s3cret"


def test_options_lists_the_methods_of_each_path(api: httpx.Client) -> None:
    expected = {"/": "GET, HEAD, OPTIONS", "/routes": "GET, HEAD, OPTIONS, POST",
                "/routes/r1": "DELETE, GET, HEAD, OPTIONS, PATCH, PUT",
                "/consumers/bob/key-auth/": "GET, HEAD, OPTIONS, POST",
                "/consumers/bob/acls/admin": "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"}
    for path, allow in expected.items():
        answer = api.options(path)
        assert answer.status_code == 204 and answer.content == b"", path
        assert answer.headers["allow"] == answer.headers["access-control-allow-methods"] == allow, path
        assert answer.headers["access-control-allow-headers"] == "Content-Type"


def test_options_echoes_the_requested_headers_and_knows_no_other_path(api: httpx.Client) -> None:
    answer = api.options("/consumers", headers={"Access-Control-Request-Headers": "X-Header-1,X-Header-2"})
    assert answer.headers["access-control-allow-headers"] == "X-Header-1,X-Header-2"
    answer = api.options("/nothing/here")
    assert answer.status_code == 404 and answer.json() == {"message": "Not found"}


def test_every_answer_names_the_origin(api: httpx.Client) -> None:
    answer = api.get("/", headers={"Origin": "http://example.com",
                                   "Access-Control-Request-Method": "GET"})
    assert answer.headers["access-control-allow-origin"] == "http://example.com"
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-methods" not in answer.headers  # a GET never says them
    assert api.get("/consumers").headers["access-control-allow-origin"] == "*"
    missing = api.get("/nothing/here", headers={"Origin": "http://example.com"})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "http://example.com"


def test_head_is_get_without_a_body(api: httpx.Client) -> None:
    answer = api.head("/")
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["content-type"] == api.get("/").headers["content-type"]
    missing = api.head("/nothing/here")
    assert missing.status_code == 404 and missing.content == b""


@pytest.fixture
def gui_guarded(settings: Settings) -> Iterator[AdminServer]:
    """An Admin API behind a token that a web GUI at admin.api:9100 calls from browsers."""
    configured = settings.with_overrides(admin_token=TOKEN,
                                         admin_gui_url="http://admin.api:9100/path/to/any/way, https://gui.test")
    asyncio.run(_bootstrap(configured))
    yield from serve(configured)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_admin_gui_url_names_the_origins_allowed(gui_guarded: AdminServer) -> None:
    api = gui_guarded.client
    token = {HEADER: TOKEN}
    answer = api.get("/", headers={"Origin": "http://example.com", **token})
    assert answer.headers["access-control-allow-origin"] == "http://admin.api:9100"
    answer = api.get("/", headers={"Origin": "https://gui.test", **token})
    assert answer.headers["access-control-allow-origin"] == "https://gui.test"
    refused = api.get("/", headers={"Origin": "https://gui.test"})  # no token: 401, which the GUI may read
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://gui.test"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_browsers_preflight_needs_no_token_a_plain_options_does(gui_guarded: AdminServer) -> None:
    api = gui_guarded.client
    preflight = api.options("/consumers", headers={"Origin": "https://gui.test",
                                                   "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": HEADER})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-headers"] == HEADER
    assert api.options("/consumers").status_code == 401
    assert api.get("/consumers", headers={"Origin": "https://gui.test",
                                          "Access-Control-Request-Method": "GET"}).status_code == 401
