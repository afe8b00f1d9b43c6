"""No key-auth key and no admin token ever appears in a log line: Admin API, uvicorn, store, proxy."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from tests.admin.conftest import _bootstrap
from tests.conftest import free_port, wait_for_port
from tests.proxy.conftest import proxy, recorder, request  # noqa: F401  (fixtures)
from tollway.admin.app import create_app
from tollway.admin.redact import RedactSecrets, secret_segments
from tollway.config import Settings, load_settings
from tollway.store.db import Database
from tollway.store.entities.catalog import entities_for
from tollway.store.entities.schema import REDACTED
from tollway.store.snapshot import load_snapshot

TOKEN = "token-that-must-not-be-logged"
KEY = "key-that-must-not-be-logged"


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    # uvicorn's loggers may have been configured not to propagate by an earlier server: listen there too
    loggers = [logging.getLogger(name) for name in ("", "uvicorn.access", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.name == "root" or not logger.propagate:
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _serve_with_access_log(settings: Settings) -> Iterator[tuple[httpx.Client, Database]]:
    port = free_port()
    db = Database.from_settings(settings)
    server: list[uvicorn.Server] = []

    def run() -> None:
        app = create_app(settings, db)
        # log_config=None: uvicorn's loggers propagate to the root logger, where the test listens
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="debug", access_log=True,
                                lifespan="off", log_config=None)
        server.append(uvicorn.Server(config))
        asyncio.run(server[0].serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for_port(port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Tollway-Admin-Token": TOKEN}) as client:
        yield client, db
    server[0].should_exit = True
    thread.join(10)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_keys_and_token_never_reach_a_log_line(settings: Settings, captured: Captured, proxy,  # noqa: F811
                                               echo_upstream: int) -> None:
    guarded = settings.with_overrides(admin_token=TOKEN)
    asyncio.run(_bootstrap(guarded))
    for api, _db in _serve_with_access_log(guarded):
        api.post("/services", json={"name": "echo", "url": f"http://127.0.0.1:{echo_upstream}"})
        api.post("/services/echo/routes", json={"name": "mock", "paths": ["/mock"]})
        api.post("/services/echo/plugins", json={"name": "key-auth"})
        api.post("/consumers", json={"username": "poppy"})
        assert api.post("/consumers/poppy/key-auth", data={"key": KEY}).status_code == 201
        assert api.post("/consumers/poppy/key-auth", json={"key": KEY}).status_code == 409
        assert api.get(f"/consumers/poppy/key-auth/{KEY}").status_code == 200
        assert api.get(f"/key-auths/{KEY}?x=1").status_code == 200
        assert api.patch(f"/key-auths/{KEY}", json={"ttl": 9}).status_code == 200
        assert api.get("/status", headers={"Tollway-Admin-Token": "wrong-" + TOKEN}).status_code == 401

        async def snapshot() -> dict:  # type: ignore[type-arg]
            db = Database.from_settings(guarded)
            try:
                return await load_snapshot(db, guarded)
            finally:
                await db.dispose()

        proxy.apply(asyncio.run(snapshot()))
        assert request(proxy.port, "GET", "/mock", headers={"apikey": KEY}).status == 200
        assert request(proxy.port, "GET", f"/mock?apikey={KEY}").status == 200
        assert request(proxy.port, "GET", "/mock", headers={"apikey": KEY + "-wrong"}).status == 401
        assert api.delete(f"/key-auths/{KEY}").status_code == 204
    access = [line for line in captured.lines if line.startswith("uvicorn.access")]
    assert any(f"/key-auths/{REDACTED}" in line for line in access)  # the access log was on
    server_side = [line for line in captured.lines if not line.startswith(("httpx", "httpcore"))]  # the client's
    leaked = [line for line in server_side if KEY in line or TOKEN in line]
    assert leaked == []


def test_redact_rewrites_key_auth_paths_only() -> None:
    segments = secret_segments(entities_for(load_settings(environ={})))
    assert segments == ["key-auth", "key-auths"]  # learnt from key-auth's entity: its key is secret
    redact = RedactSecrets(segments).redact
    assert redact("GET /consumers/c/key-auth/abc?x=1 HTTP/1.1") == f"GET /consumers/c/key-auth/{REDACTED}?x=1 HTTP/1.1"
    assert redact('"DELETE /key-auths/abc/consumer"') == f'"DELETE /key-auths/{REDACTED}/consumer"'
    assert redact("GET /consumers/c/key-auth HTTP/1.1") == "GET /consumers/c/key-auth HTTP/1.1"
    assert redact("GET /services/abc") == "GET /services/abc"
