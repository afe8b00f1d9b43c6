"""A database that cannot be reached: 503 in Kong's message shape, and /status says so."""

from __future__ import annotations

from pathlib import Path

from tests.admin.conftest import serve
from tests.conftest import free_port, make_settings


def test_unreachable_database_answers_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "postgres", pg_host="127.0.0.1", pg_port=str(free_port()), pg_timeout="2")
    for admin in serve(settings):
        answer = admin.client.get("/consumers")
        assert answer.status_code == 503
        assert answer.json()["message"].startswith("database unavailable")
        assert admin.client.post("/consumers", data={"username": "x"}).status_code == 503
        status = admin.client.get("/status")
        assert status.status_code == 200 and status.json()["database"] == {"reachable": False}
        assert admin.changes == []
