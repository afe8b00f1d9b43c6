"""A subscription's current period read from a real ledger (calls through the spool and the flusher),
hand-computed: a Berlin month across the spring change with calls that UTC would misplace, meter
filters, an anniversary on the 31st through February, a trial, entitlement windows."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.metering.conftest import finished_call, write_calls
from tollway.billing import usage_reads
from tollway.config import Settings
from tollway.metering.flusher import Flusher
from tollway.store.db import Database

BERLIN, UTC = ZoneInfo("Europe/Berlin"), ZoneInfo("UTC")


def at(tz: ZoneInfo, *fields: int) -> int:
    return int(datetime(*fields, tzinfo=tz).timestamp())


class World:
    """The Admin API and the ledger of one test database."""

    def __init__(self, api: httpx.Client, settings: Settings) -> None:
        self.api, self.settings = api, settings
        self.ids: dict[str, str] = {}
        for name in ("mock", "other"):
            service = api.post("/services", json={"name": name, "host": "example.com"}).json()
            route = api.post("/routes", json={"name": name, "paths": [f"/{name}"],
                                              "service": {"id": service["id"]}}).json()
            self.ids[name], self.ids[name + "-route"] = service["id"], route["id"]
        for username in ("poppy", "digit"):
            self.ids[username] = api.post("/consumers", json={"username": username}).json()["id"]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(path, json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def calls(self, consumer: str, when: int, count: int, status: int = 200, service: str = "mock",
              response_bytes: int = 1000) -> list[Any]:
        who = {"id": self.ids[consumer], "username": consumer, "custom_id": None}
        where = {"id": self.ids[service], "name": service, "host": "example.com"}
        route = {"id": self.ids[service + "-route"], "name": service, "paths": [f"/{service}"]}
        return [finished_call(when + 0.5, consumer=who, service=where, route=route, status=status,
                              response_bytes=response_bytes) for _ in range(count)]

    def record(self, calls: list[Any]) -> None:
        """Through the spool and the flusher, as the proxy's calls go."""
        write_calls(self.settings, calls)

        async def flush(db: Database) -> None:
            await Flusher(db, self.settings, "node-1").flush_once()

        self.run(flush)

    def usage(self, consumer: str, now: int) -> dict[str, Any] | None:
        async def read(db: Database) -> dict[str, Any] | None:
            async with db.connect() as conn:
                reading = await usage_reads.active_reading(conn, self.ids[consumer], now)
                if reading is None:
                    return None
                return (await usage_reads.answers(conn, self.settings, [reading], now))[0]

        return self.run(read)  # type: ignore[no-any-return]

    def run(self, body: Any) -> Any:
        async def main() -> Any:
            db = Database.from_settings(self.settings)
            try:
                return await body(db)
            finally:
                await db.dispose()
        return asyncio.run(main())


@pytest.fixture
def world(api: httpx.Client, settings: Settings) -> World:
    return World(api, settings)


def meters(answer: dict[str, Any]) -> dict[str, tuple[int, str | None]]:
    return {m["meter"]: (m["units"], m["amount"]) for m in answer["meters"]}


def limits(answer: dict[str, Any]) -> list[tuple[str, str, int, int, int, int, str]]:
    return [(e["meter"], e["period"], e["limit"], e["used"], e["remaining"], e["overage"], e["resets_at"])
            for e in answer["entitlements"]]


def test_a_berlin_month_across_the_spring_change(world: World) -> None:
    world.post("/meters", {"name": "ok-calls", "service": {"name": "mock"}, "status": ["2xx"]})
    world.post("/meters", {"name": "egress", "aggregation": "sum", "field": "response_bytes"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "30"})
    world.post("/plans/pro/charges", {"meter": {"name": "ok-calls"}, "model": "graduated", "tiers": [
        {"up_to": 50, "unit_price": "0"}, {"up_to": None, "unit_price": "0.025"}]})
    world.post("/plans/pro/charges", {"meter": {"name": "egress"}, "model": "package", "package_size": 10000,
                                      "package_price": "0.10"})
    world.post("/plans/pro/entitlements", {"meter": {"name": "ok-calls"}, "limit": 12, "period": "day"})
    world.post("/plans/pro/entitlements", {"meter": {"name": "ok-calls"}, "limit": 1000,
                                           "period": "billing_period", "enforcement": "soft"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "tz": "Europe/Berlin",
                                                  "started_at": at(BERLIN, 2027, 2, 1)})
    world.record([
        *world.calls("poppy", at(BERLIN, 2027, 2, 28, 23, 30), 4),             # February in Berlin (22:30Z)
        *world.calls("poppy", at(BERLIN, 2027, 3, 1, 0, 30), 2),               # March in Berlin, Feb 28 in UTC
        *world.calls("poppy", at(BERLIN, 2027, 3, 15, 12), 50),
        *world.calls("poppy", at(BERLIN, 2027, 3, 15, 12), 7, status=500),     # not ok: egress only
        *world.calls("poppy", at(BERLIN, 2027, 3, 15, 12), 3, service="other"),  # not mock: egress only
        *world.calls("poppy", at(BERLIN, 2027, 3, 28, 1, 30), 10),             # before the jump (00:30Z)
        *world.calls("poppy", at(BERLIN, 2027, 3, 28, 3, 30), 5),              # after it (01:30Z)
        *world.calls("digit", at(BERLIN, 2027, 3, 15, 12), 99),                # someone else
    ])
    answer = world.usage("poppy", at(BERLIN, 2027, 3, 28, 12))
    assert answer is not None
    assert answer["period"] == {"start": "2027-03-01T00:00:00+01:00", "end": "2027-04-01T00:00:00+02:00",
                                "start_epoch": at(BERLIN, 2027, 3, 1), "end_epoch": at(BERLIN, 2027, 4, 1),
                                "days": 31}
    assert answer["counted_from"] == "2027-03-01T00:00:00+01:00"
    # ok-calls: 2 + 50 + 10 + 5 = 67, 17 past the free 50 at 0.025 = 0.425 -> 0.43 (half even: 0.42);
    # egress: 77 calls of 1000 bytes = 77,000 bytes = 8 packages of 10,000 at 0.10
    assert meters(answer) == {"egress": (77_000, "0.80"), "ok-calls": (67, "0.43")}
    assert answer["base_fee"]["amount"] == "30.00" and answer["base_fee"]["proration"] == {"days": 31,
                                                                                           "period_days": 31}
    assert (answer["total"], answer["total_minor"], answer["currency"]) == ("31.23", 3123, "USD")
    # the 23-hour day of the change: 10 + 5 calls against 12
    assert limits(answer) == [
        ("ok-calls", "day", 12, 15, 0, 3, "2027-03-29T00:00:00+02:00"),
        ("ok-calls", "billing_period", 1000, 67, 933, 0, "2027-04-01T00:00:00+02:00"),
    ]
    assert answer["subscription"]["plan"]["name"] == "pro" and answer["subscription"]["plan_version"] == 1


def test_an_anniversary_on_the_31st_through_february_and_the_phase_start(world: World) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "monthly", "currency": "EUR", "billing_anchor": "anniversary", "base_fee": "28"})
    world.post("/plans/monthly/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.01"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "monthly"},
                                                  "started_at": at(UTC, 2027, 1, 31, 10, 0, 30)})
    world.record([*world.calls("poppy", at(UTC, 2027, 1, 31, 9, 59), 3),     # before it started
                  *world.calls("poppy", at(UTC, 2027, 1, 31, 10), 4),        # its first minute
                  *world.calls("poppy", at(UTC, 2027, 2, 27, 23, 59), 5),
                  *world.calls("poppy", at(UTC, 2027, 2, 28), 6),            # the next period
                  *world.calls("poppy", at(UTC, 2027, 3, 30, 23, 59), 7)])
    february = world.usage("poppy", at(UTC, 2027, 2, 27, 23, 59, 59))
    assert february is not None
    assert (february["period"]["start"], february["period"]["end"], february["period"]["days"]) == \
        ("2027-01-31T00:00:00+00:00", "2027-02-28T00:00:00+00:00", 28)
    assert february["counted_from"] == "2027-01-31T10:00:00+00:00"
    # the subscription covers every local day of the period (its first day counts): the whole fee
    assert meters(february) == {"calls": (9, "0.09")} and february["total"] == "28.09"
    march = world.usage("poppy", at(UTC, 2027, 3, 31, 0, 0))
    assert march is not None
    assert (march["period"]["start"], march["period"]["end"], march["period"]["days"]) == \
        ("2027-03-31T00:00:00+00:00", "2027-04-30T00:00:00+00:00", 30)
    assert meters(march)["calls"] == (0, "0.00")
    last = world.usage("poppy", at(UTC, 2027, 3, 30, 23, 59, 59))
    assert last is not None and last["period"]["days"] == 31 and meters(last)["calls"] == (13, "0.13")
    assert world.usage("poppy", at(UTC, 2027, 1, 31, 9, 59, 59)) is None  # not started yet


def test_a_trial_frees_the_base_fee_until_it_ends(world: World) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "trial", "currency": "JPY", "base_fee": "3100", "trial_days": 14})
    world.post("/consumers/digit/subscriptions", {"plan": {"name": "trial"}, "tz": "Asia/Tokyo",
                                                  "started_at": at(ZoneInfo("Asia/Tokyo"), 2027, 3, 1, 9)})
    answer = world.usage("digit", at(ZoneInfo("Asia/Tokyo"), 2027, 3, 10))
    assert answer is not None
    # the trial runs Mar 1-14: Mar 15-31 is 17 of 31 days: 3100 × 17/31 = 1700 yen
    assert answer["base_fee"]["proration"] == {"days": 17, "period_days": 31}
    assert (answer["base_fee"]["amount"], answer["total"], answer["total_minor"]) == ("1700", "1700", 1700)
    assert answer["meters"] == []


def test_get_usage_on_the_admin_api(world: World) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "0"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.5"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}})
    world.record(world.calls("poppy", int(time.time()), 3))
    answer = world.api.get("/consumers/poppy/usage").json()
    assert answer["consumer"]["username"] == "poppy"
    assert meters(answer) == {"calls": (3, "1.50")} and answer["total_minor"] == 150
    missing = world.api.get("/consumers/digit/usage")
    assert missing.status_code == 404 and missing.json() == {"message": "consumer 'digit' has no active subscription"}
    assert world.api.get("/consumers/nobody/usage").status_code == 404
