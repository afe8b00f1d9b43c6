"""Billing runs on a real ledger with a fixed clock, each figure computed by hand: an anniversary from
the 31st, a plan change mid-month, a trial, a minimum commitment, JPY; drafts refreshed by late
usage, finalized after the grace period with gapless numbers; a second run changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.billing.test_usage_ledger import UTC, World, at
from tollway.billing import invoice_run, invoice_store, subscription_writes
from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.entities.catalog import Catalog

NEW_YORK = ZoneInfo("America/New_York")


class Billing(World):
    def bill(self, now: int, **options: Any) -> invoice_run.RunReport:
        return self.run(lambda db: invoice_run.run(db, self.settings, lambda: now, **options))  # type: ignore[no-any-return]

    def invoices(self, consumer: str) -> list[dict[str, Any]]:
        async def read(db: Database) -> list[dict[str, Any]]:
            async with db.connect() as conn:
                found = await invoice_store.list_invoices(conn, consumer_id=self.ids[consumer])
                lines = await invoice_store.read_lines(conn, [item["id"] for item in found])
            return sorted(({**item, "lines": lines[item["id"]]} for item in found), key=lambda i: i["period_start"])

        return self.run(read)  # type: ignore[no-any-return]

    def change_plan(self, consumer: str, plan: str, now: int) -> None:
        async def change(db: Database) -> None:
            catalog = Catalog(self.settings, db)
            async with db.connect() as conn:
                subscription = (await subscription_writes.consumer_subscriptions(conn, self.ids[consumer]))[-1]
            await subscription_writes.update(catalog, subscription["id"], {"plan": {"name": plan}}, form=False,
                                             now=now)

        self.run(change)


@pytest.fixture
def world(api: httpx.Client, settings: Settings) -> Billing:
    return Billing(api, settings.with_overrides(invoice_grace_period=3600, invoice_prefix="TW-"))


def lines(invoice: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(line["kind"], line["plan_name"], line["meter"], line["quantity"], line["amount"], line["amount_minor"])
            for line in invoice["lines"]]


def totals(invoice: dict[str, Any]) -> tuple[Any, ...]:
    return invoice["currency"], invoice["subtotal"], invoice["credits"], invoice["total"], invoice["total_minor"]


def test_an_anniversary_from_the_31st_bills_each_period_once(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "monthly", "currency": "USD", "billing_anchor": "anniversary", "base_fee": "31"})
    world.post("/plans/monthly/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.01"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "monthly"}, "started_at": at(UTC, 2027, 1, 31)})
    world.record([*world.calls("poppy", at(UTC, 2027, 2, 10), 150), *world.calls("poppy", at(UTC, 2027, 2, 28), 7)])
    before = world.bill(at(UTC, 2027, 2, 27, 23, 59))
    assert before.created == [] and world.invoices("poppy") == []
    report = world.bill(at(UTC, 2027, 2, 28, 0, 30))
    assert len(report.created) == 1
    [first] = world.invoices("poppy")
    # Jan 31 - Feb 28 (the anniversary falls on February's last day): 28 days, the whole fee;
    # 150 calls × 0.01 = 1.50; the 7 calls of Feb 28 belong to the next period
    assert (first["period_start"], first["period_end"], first["period"]) == (at(UTC, 2027, 1, 31),
                                                                             at(UTC, 2027, 2, 28), "2027-01")
    assert lines(first) == [("base_fee", "monthly", None, "1", "31.00", 3100),
                            ("usage", "monthly", "calls", "150", "1.50", 150)]
    assert totals(first) == ("USD", "32.50", "0.00", "32.50", 3250) and first["status"] == "draft"
    again = world.bill(at(UTC, 2027, 2, 28, 0, 45))
    assert again.created == [] and again.refreshed == [first["id"]] and len(world.invoices("poppy")) == 1
    # after the grace period it is finalized; a month later the second period is drafted
    world.bill(at(UTC, 2027, 2, 28, 1, 30))
    world.bill(at(UTC, 2027, 3, 31, 0, 10))
    first, second = world.invoices("poppy")
    assert (first["status"], first["number"]) == ("finalized", "TW-000001")
    assert first["issued_at"] == at(UTC, 2027, 2, 28, 1, 30)
    assert first["due_at"] == first["issued_at"] + 30 * 86_400
    assert (second["period_start"], second["period_end"], second["status"]) == (at(UTC, 2027, 2, 28),
                                                                                at(UTC, 2027, 3, 31), "draft")
    assert lines(second) == [("base_fee", "monthly", None, "1", "31.00", 3100),
                             ("usage", "monthly", "calls", "7", "0.07", 7)]


def test_a_plan_change_mid_month_splits_usage_and_prorates_each_fee(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "basic", "currency": "USD", "base_fee": "30"})
    world.post("/plans/basic/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.01"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "62"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "graduated", "tiers": [
        {"up_to": 100, "unit_price": "0"}, {"up_to": None, "unit_price": "0.02"}]})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "basic"}, "tz": "America/New_York",
                                                  "started_at": at(NEW_YORK, 2027, 3, 1)})
    world.change_plan("poppy", "pro", at(NEW_YORK, 2027, 3, 11, 12))
    world.record([*world.calls("poppy", at(NEW_YORK, 2027, 3, 5), 200),
                  *world.calls("poppy", at(NEW_YORK, 2027, 3, 11, 11), 50),     # the change's day, before it
                  *world.calls("poppy", at(NEW_YORK, 2027, 3, 20), 250),
                  *world.calls("poppy", at(NEW_YORK, 2027, 4, 1, 0, 30), 9)])  # April in New York
    world.bill(at(NEW_YORK, 2027, 4, 1, 0, 30))
    [invoice] = world.invoices("poppy")
    # basic Mar 1-10: 30 × 10/31 = 9.677... -> 9.68; 250 calls × 0.01 = 2.50
    # pro Mar 11-31: 62 × 21/31 = 42.00; 250 calls, 100 free, 150 × 0.02 = 3.00
    assert lines(invoice) == [("base_fee", "basic", None, "10/31", "9.68", 968),
                              ("usage", "basic", "calls", "250", "2.50", 250),
                              ("base_fee", "pro", None, "21/31", "42.00", 4200),
                              ("usage", "pro", "calls", "250", "3.00", 300)]
    assert [tier["units"] for tier in invoice["lines"][3]["tiers"]] == ["100", "150"]
    assert totals(invoice) == ("USD", "57.18", "0.00", "57.18", 5718)
    assert (invoice["period_start"], invoice["period_end"]) == (at(NEW_YORK, 2027, 3, 1), at(NEW_YORK, 2027, 4, 1))


def test_a_trial_and_a_minimum_commitment(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "trial", "currency": "USD", "base_fee": "31", "trial_days": 10})
    world.post("/plans/trial/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.5"})
    world.post("/plans", {"name": "committed", "currency": "USD", "minimum_commitment": "50"})
    world.post("/plans/committed/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.10"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "trial"}, "started_at": at(UTC, 2027, 5, 1)})
    world.post("/consumers/digit/subscriptions", {"plan": {"name": "committed"}, "started_at": at(UTC, 2027, 5, 1)})
    world.record([*world.calls("poppy", at(UTC, 2027, 5, 3), 10), *world.calls("digit", at(UTC, 2027, 5, 3), 120)])
    world.bill(at(UTC, 2027, 6, 1, 0, 5))
    [trial] = world.invoices("poppy")
    # the trial frees May 1-10: 21 of 31 days, 31 × 21/31 = 21.00; usage in the trial is billed: 10 × 0.5
    assert lines(trial) == [("base_fee", "trial", None, "21/31", "21.00", 2100),
                            ("usage", "trial", "calls", "10", "5.00", 500)]
    assert totals(trial)[3] == "26.00"
    [committed] = world.invoices("digit")
    # 120 × 0.10 = 12.00 against 50 committed: a true-up of 38.00
    assert lines(committed) == [("base_fee", "committed", None, "1", "0.00", 0),
                                ("usage", "committed", "calls", "120", "12.00", 1200),
                                ("minimum_commitment", "committed", None, "1", "38.00", 3800)]
    assert totals(committed) == ("USD", "50.00", "0.00", "50.00", 5000)


def test_jpy_rounds_half_up_to_whole_yen(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "yen", "currency": "JPY", "base_fee": "1000"})
    world.post("/plans/yen/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.5"})
    tokyo = ZoneInfo("Asia/Tokyo")
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "yen"}, "tz": "Asia/Tokyo",
                                                  "started_at": at(tokyo, 2027, 4, 16, 9)})
    world.record(world.calls("poppy", at(tokyo, 2027, 4, 20), 3))
    world.bill(at(tokyo, 2027, 5, 1, 0, 1))
    [invoice] = world.invoices("poppy")
    # April 16-30: 15 of 30 days, 1000 × 15/30 = 500 yen; 3 × 0.5 = 1.5 -> 2 yen (half even: 2 too, 2.5 -> 3 below)
    assert lines(invoice) == [("base_fee", "yen", None, "15/30", "500", 500), ("usage", "yen", "calls", "3", "2", 2)]
    assert totals(invoice) == ("JPY", "502", "0", "502", 502)
    assert invoice["period_start"] == at(tokyo, 2027, 4, 16, 9)


def test_late_usage_lands_in_the_draft_and_a_finalized_invoice_never_changes(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.25"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1)})
    world.record(world.calls("poppy", at(UTC, 2027, 7, 31, 23, 59), 2))
    world.bill(at(UTC, 2027, 8, 1, 0, 1))
    assert totals(world.invoices("poppy")[0])[3] == "0.50"
    world.record(world.calls("poppy", at(UTC, 2027, 7, 31, 23, 58), 3))   # a node flushed late
    world.bill(at(UTC, 2027, 8, 1, 0, 30))
    [invoice] = world.invoices("poppy")
    assert (invoice["status"], totals(invoice)[3], lines(invoice)[-1][3]) == ("draft", "1.25", "5")
    world.bill(at(UTC, 2027, 8, 1, 1, 0))           # the grace period is over
    world.record(world.calls("poppy", at(UTC, 2027, 7, 31, 23, 57), 4))
    world.bill(at(UTC, 2027, 8, 1, 2, 0))
    [invoice] = world.invoices("poppy")
    assert (invoice["status"], invoice["number"], totals(invoice)[3]) == ("finalized", "TW-000001", "1.25")


def test_a_dry_run_writes_nothing_and_period_selects_a_month(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "10"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1)})
    dry = world.bill(at(UTC, 2027, 9, 1, 0, 1), dry_run=True)
    assert [(item["period"], item["total"]) for item in dry.planned] == [("2027-07", "10.00"), ("2027-08", "10.00")]
    assert world.invoices("poppy") == []
    world.bill(at(UTC, 2027, 9, 1, 0, 1), period="2027-08")
    assert [item["period"] for item in world.invoices("poppy")] == ["2027-08"]
    world.bill(at(UTC, 2027, 9, 1, 0, 1))
    assert [item["period"] for item in world.invoices("poppy")] == ["2027-07", "2027-08"]
    assert world.bill(at(UTC, 2027, 9, 1, 0, 2)).created == []


def test_a_period_the_ledger_no_longer_holds_exactly_is_reported_and_the_others_billed(world: Billing) -> None:
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "10"})
    world.post("/meters", {"name": "calls"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "1"})
    # poppy started at 10:30: her first period's first hour needs per-minute rows, kept 7 days
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1, 10, 30)})
    world.post("/consumers/digit/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1)})
    report = world.bill(at(UTC, 2027, 8, 20))
    poppy = world.api.get("/consumers/poppy/subscriptions").json()["data"][0]["id"]
    assert [item["subscription"] for item in report.failed] == [poppy]
    assert "billable_minute_retention" in report.failed[0]["error"]
    assert world.invoices("poppy") == [] and [i["total"] for i in world.invoices("digit")] == ["10.00"]


def test_a_subscription_cancelled_mid_month_gets_a_last_prorated_invoice(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "31"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.10"})
    created = world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"},
                                                            "started_at": at(UTC, 2027, 5, 1)})

    async def cancel(db: Database) -> None:
        await subscription_writes.cancel(Catalog(world.settings, db), created["id"], False,
                                         now=at(UTC, 2027, 5, 11, 10))

    world.run(cancel)
    world.record([*world.calls("poppy", at(UTC, 2027, 5, 11, 10), 4),       # its last minute
                  *world.calls("poppy", at(UTC, 2027, 5, 11, 10, 1), 9)])   # after it ended
    world.bill(at(UTC, 2027, 5, 11, 12))
    [last] = world.invoices("poppy")
    # active May 1-10 (the day it ended on is not billed): 31 × 10/31 = 10.00; 4 calls × 0.10 = 0.40
    assert (last["period_start"], last["period_end"]) == (at(UTC, 2027, 5, 1), at(UTC, 2027, 5, 11, 10, 1))
    assert lines(last) == [("base_fee", "pro", None, "10/31", "10.00", 1000),
                           ("usage", "pro", "calls", "4", "0.40", 40)]
    assert world.bill(at(UTC, 2027, 7, 1)).created == []   # nothing after it ended


def test_concurrent_runs_without_the_lock_still_bill_each_period_once(world: Billing) -> None:
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "10"})
    for name in ("poppy", "digit"):
        world.post(f"/consumers/{name}/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 1, 1)})

    async def race(_db: Database) -> list[invoice_run.RunReport]:
        # two "nodes", each with its own connections, neither taking the billing lock
        dbs = [Database.from_settings(world.settings) for _ in range(4)]
        try:
            first = await asyncio.gather(*(invoice_run.run(db, world.settings, lambda: at(UTC, 2027, 3, 1, 0, 30))
                                           for db in dbs[:2]))
            second = await asyncio.gather(*(invoice_run.run(db, world.settings, lambda: at(UTC, 2027, 3, 1, 2))
                                            for db in dbs[2:]))
            return [*first, *second]
        finally:
            for db in dbs:
                await db.dispose()

    reports = world.run(race)
    assert sum(len(report.created) for report in reports) == 4            # Jan and Feb, two subscriptions
    invoices = world.invoices("poppy") + world.invoices("digit")
    assert sorted((item["period"], item["status"]) for item in invoices) == [
        ("2027-01", "finalized"), ("2027-01", "finalized"), ("2027-02", "finalized"), ("2027-02", "finalized")]
    assert sorted(item["number"] for item in invoices) == ["TW-000001", "TW-000002", "TW-000003", "TW-000004"]
