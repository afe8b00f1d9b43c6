"""Subscriptions on the Admin API: one at a time per consumer, plan versions kept by those who took
them, plan changes now or at the period's end, cancels, and what proxy workers receive."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx

from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.snapshot import load_snapshot


def seed(api: httpx.Client) -> None:
    for username in ("poppy", "digit"):
        assert api.post("/consumers", json={"username": username}).status_code == 201
    assert api.post("/meters", json={"name": "calls"}).status_code == 201
    for name, fee in (("basic", "9"), ("pro", "29")):
        assert api.post("/plans", json={"name": name, "currency": "USD", "base_fee": fee}).status_code == 201
        assert api.post(f"/plans/{name}/entitlements", json={"meter": {"name": "calls"}, "limit": 100,
                                                             "period": "day"}).status_code == 201
    assert api.post("/plans/pro/entitlements", json={"meter": {"name": "calls"}, "limit": 5000, "period": "month",
                                                     "enforcement": "soft"}).status_code == 201


def next_month_utc() -> int:
    now = datetime.now(UTC)
    return int(datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC).timestamp())


def test_a_subscription_takes_the_plan_as_a_version_and_starts_this_minute(api: httpx.Client) -> None:
    seed(api)
    before = int(time.time())
    created = api.post("/consumers/poppy/subscriptions", data={"plan.name": "pro", "external_customer_id": "cus_1"})
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["plan_version"] == 1 and sub["tz"] == "UTC" and sub["ends_at"] is None
    assert before - before % 60 <= sub["started_at"] <= time.time() and sub["started_at"] % 60 == 0
    assert [(p["plan"]["name"], p["plan_version"], p["ends_at"]) for p in sub["phases"]] == [("pro", 1, None)]
    assert api.get(f"/subscriptions/{sub['id']}").json() == sub
    assert api.get("/consumers/poppy/subscriptions").json()["data"] == [sub]
    versions = api.get("/plans/pro/versions").json()["data"]
    assert [v["version"] for v in versions] == [1]
    assert versions[0]["definition"]["entitlements"] == [
        {"meter": "calls", "limit": 100, "period": "day", "enforcement": "hard"},
        {"meter": "calls", "limit": 5000, "period": "month", "enforcement": "soft"}]


def test_one_subscription_at_a_time_per_consumer(api: httpx.Client) -> None:
    seed(api)
    first = api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "pro"}}).json()
    second = api.post("/subscriptions", json={"consumer": {"username": "poppy"}, "plan": {"name": "basic"}})
    assert second.status_code == 409
    assert second.json()["message"] == (f"the consumer already has a subscription over that time ({first['id']}): "
                                        "cancel it, or change its plan with a PATCH")
    assert second.json()["code"] == 5
    assert api.post("/consumers/digit/subscriptions", json={"plan": {"name": "basic"}}).status_code == 201


def test_bad_subscription_fields_are_named_at_once(api: httpx.Client) -> None:
    seed(api)
    response = api.post("/consumers/poppy/subscriptions", json={
        "plan": {"name": "pro"}, "tz": "Mars/Olympus", "plan_version": 3, "phases": [], "started_at": -5})
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "tz": "unknown time zone 'Mars/Olympus': expected an IANA name such as Europe/Berlin",
        "plan_version": "is set by Tollway", "phases": "is set by Tollway",
        "started_at": "value should be between 0 and 9007199254740992"}
    unknown_plan = api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "gold"}})
    assert unknown_plan.status_code == 400 and unknown_plan.json()["name"] == "foreign keys unresolved"
    assert api.post("/consumers/nobody/subscriptions", json={"plan": {"name": "pro"}}).status_code == 404


def test_editing_a_plan_never_changes_a_taken_version_and_a_patch_moves_to_the_latest(api: httpx.Client) -> None:
    seed(api)
    sub = api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "pro"}}).json()
    assert api.patch("/plans/pro", json={"base_fee": "39"}).status_code == 200
    assert api.get(f"/subscriptions/{sub['id']}").json()["plan_version"] == 1
    assert api.get("/plans/pro/versions/1").json()["definition"]["base_fee"] == "29"
    # the next subscriber takes the plan as it is now: version 2
    assert api.post("/consumers/digit/subscriptions", json={"plan": {"name": "pro"}}).json()["plan_version"] == 2
    assert api.post("/plans/pro/versions").status_code == 200  # the head is version 2 already
    moved = api.patch(f"/consumers/poppy/subscriptions/{sub['id']}", json={"plan": {"name": "pro"}}).json()
    assert moved["plan_version"] == 2
    phases = [(p["plan_version"], p["ends_at"] is None) for p in moved["phases"]]
    assert phases in ([(1, False), (2, True)], [(2, True)])  # history kept (or replaced within its first minute)
    assert api.get("/plans/pro/versions/3").status_code == 404
    assert api.get("/plans/pro/versions/x").status_code == 404


def test_a_change_at_the_end_of_the_period_and_cancels(api: httpx.Client) -> None:
    seed(api)
    sub = api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "pro"}}).json()
    url = f"/consumers/poppy/subscriptions/{sub['id']}"
    scheduled = api.patch(url, json={"next_plan": {"name": "basic"}}).json()
    assert scheduled["plan"] == sub["plan"] and scheduled["next_plan_at"] == next_month_utc()
    assert scheduled["next_plan"]["id"] == api.get("/plans/basic").json()["id"]
    assert [p["plan"]["name"] for p in scheduled["phases"]] == ["pro", "basic"]
    assert api.patch(url, json={"next_plan": None}).json()["next_plan"] is None
    at_end = api.post(f"{url}/cancel", json={}).json()
    assert at_end["ends_at"] == next_month_utc()
    now = api.post(f"/subscriptions/{sub['id']}/cancel", data={"at": "now"}).json()
    assert now["ends_at"] == int(time.time()) // 60 * 60 + 60 and now["phases"][-1]["ends_at"] == now["ends_at"]
    bad = api.post(f"{url}/cancel", json={"at": "tomorrow", "reason": "x"})
    assert bad.status_code == 400 and bad.json()["fields"] == {"at": "expected one of: now, period_end",
                                                               "reason": "unknown field"}


def test_what_a_subscription_is_bound_to_cannot_be_changed_and_an_active_one_is_not_deleted(api: httpx.Client) -> None:
    seed(api)
    sub = api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "pro"}}).json()
    refused = api.patch(f"/subscriptions/{sub['id']}", json={"tz": "Europe/Berlin", "ends_at": 5,
                                                             "consumer": {"username": "digit"}})
    assert refused.status_code == 400 and refused.json()["fields"] == {
        "tz": "cannot be changed: cancel this subscription and create another",
        "consumer": "cannot be changed: cancel this subscription and create another", "ends_at": "is set by Tollway"}
    assert api.patch(f"/subscriptions/{sub['id']}", json={"external_customer_id": "cus_9"}).json()[
        "external_customer_id"] == "cus_9"
    assert api.put(f"/subscriptions/{sub['id']}", json={**sub, "external_customer_id": "cus_10"}).status_code == 200
    deleting = api.delete(f"/subscriptions/{sub['id']}")
    assert deleting.status_code == 400 and "cancel it first" in deleting.json()["message"]
    assert api.delete("/consumers/poppy").status_code == 400  # its subscription keeps it
    assert api.delete("/plans/pro").status_code == 400        # so do its versions
    later = api.post("/consumers/digit/subscriptions", json={"plan": {"name": "basic"},
                                                             "started_at": int(time.time()) + 86_400})
    assert later.status_code == 201
    assert api.delete(f"/consumers/digit/subscriptions/{later.json()['id']}").status_code == 204  # not started


def test_workers_receive_subscriptions_with_their_hard_entitlements_only(api: httpx.Client, settings: Settings) -> None:
    seed(api)
    sub = api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "pro"}, "tz": "Europe/Berlin"}).json()

    async def snapshot() -> dict[str, object]:
        db = Database.from_settings(settings)
        try:
            return await load_snapshot(db, settings)
        finally:
            await db.dispose()

    sent = asyncio.run(snapshot())
    assert "plans" not in sent and "meters" not in sent and "charges" not in sent
    assert sent["subscriptions"] == [{
        "id": sub["id"], "consumer": sub["consumer"], "started_at": sub["started_at"], "ends_at": None,
        "tz": "Europe/Berlin", "phases": [{**sub["phases"][0], "entitlements": [
            {"meter": {"name": "calls", "aggregation": "count", "field": None, "service": None, "route": None,
                       "status": None}, "limit": 100, "period": "day", "enforcement": "hard"}]}]}]
