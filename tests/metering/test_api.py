"""GET /billable over real HTTP (uvicorn on a free port), and `tollway report` on the same ledger."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette

from tests.conftest import free_port
from tests.metering.conftest import BOB, finished_call, with_ledger, write_calls
from tollway.config import Settings
from tollway.metering.cli import report
from tollway.metering.flusher import Flusher
from tollway.plugins.billable.api import routes
from tollway.store.db import Database


@dataclass
class Ctx:
    db: Database
    settings: Settings


@pytest.fixture
def admin(settings: Settings) -> Iterator[str]:
    """The base URL of an app serving routes(ctx), with 7+4 calls and 5 anonymous 401s metered."""
    now = time.time()
    write_calls(settings, [finished_call(started_at=now) for _ in range(7)]
                + [finished_call(started_at=now, consumer=BOB) for _ in range(4)]
                + [finished_call(started_at=now, consumer=None, status=401) for _ in range(5)])

    async def flush(db: Database) -> None:
        await Flusher(db, settings, "node-1").flush_once()

    with_ledger(settings, flush)
    db = Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await db.dispose()  # in the server's own loop, where its connections live

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes(Ctx(db, settings)), lifespan=lifespan),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def tally(rows: list[dict]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for row in rows:
        key = ((row["consumer"] or {}).get("username") or "-", row["status"])
        out[key] = out.get(key, 0) + row["requests"]
    return out


def test_billable_answers_json_like_the_seed_walkthrough(admin: str) -> None:
    for path in ("/billable", "/billable/"):
        response = httpx.get(admin + path)
        assert response.status_code == 200
        body = response.json()
        assert body["period"] == "day" and body["tz"] == "UTC" and body["next"] is None
        assert tally(body["data"]) == {("-", 401): 5, ("bob", 200): 4, ("alice", 200): 7}


def test_next_is_a_path_to_the_following_page(admin: str) -> None:
    body = httpx.get(admin + "/billable", params={"size": 2, "period": "month"}).json()
    rows = body["data"]
    while body["next"]:
        assert body["next"].startswith("/billable?")
        body = httpx.get(admin + body["next"]).json()
        rows += body["data"]
    assert tally(rows) == {("-", 401): 5, ("bob", 200): 4, ("alice", 200): 7}


def test_csv_export_is_an_attachment_with_every_row(admin: str) -> None:
    response = httpx.get(admin + "/billable", params={"period": "month", "csv": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="tollway-usage-month-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {(r["consumer_username"] or "-", r["status"]): r["requests"] for r in rows} == {
        ("-", "401"): "5", ("bob", "200"): "4", ("alice", "200"): "7"}
    assert httpx.get(admin + "/billable", headers={"Accept": "text/csv"}).text.startswith("period,")


def test_bad_parameters_answer_400_in_kongs_schema_violation_shape(admin: str) -> None:
    response = httpx.get(admin + "/billable", params={"period": "fortnight", "tz": "X/Y", "size": "5000"})
    assert response.status_code == 400
    assert response.json() == {
        "code": 2, "name": "schema violation",
        "message": "3 schema violations (period: expected one of: minute, hour, day, week, month, year; "
                   "size: expected an integer from 1 to 1000; tz: unknown time zone 'X/Y')",
        "fields": {"period": "expected one of: minute, hour, day, week, month, year",
                   "tz": "unknown time zone 'X/Y'", "size": "expected an integer from 1 to 1000"}}


def test_tollway_report_prints_a_table_and_csv(admin: str, settings: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(report, ["--period", "month"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["period_start", "consumer"]
    assert any("bob" in line and line.split()[-4] == "4" for line in lines)
    result = runner.invoke(report, ["--period", "month", "--csv", "--consumer", "alice"],
                           obj={"settings": settings})
    assert result.exit_code == 0, result.output
    assert [r["requests"] for r in csv.DictReader(io.StringIO(result.output))] == ["7"]


def test_tollway_report_bad_options_end_with_one_line(settings: Settings) -> None:
    from tollway.metering.query import QueryError

    result = CliRunner().invoke(report, ["--period", "decade"], obj={"settings": settings})
    assert isinstance(result.exception, QueryError)  # tollway.cli.main prints it as one line, exit 1
    assert str(result.exception) == ("schema violation (period: expected one of: minute, hour, day, week, "
                                     "month, year)")


@pytest.mark.parametrize("query", ["start=1e18", "end=1e308", "consumer=%00", "service=a%00b", "route=%00"])
def test_hostile_report_parameters_answer_400_in_kongs_shape_on_both_databases(admin: str, query: str) -> None:
    answer = httpx.get(f"{admin}/billable?{query}", timeout=10)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == 2 and body["name"] == "schema violation" and body["fields"]
