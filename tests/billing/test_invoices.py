"""Billing runs on a real ledger with a fixed clock, each figure computed by hand: an anniversary from
the 31st, a plan change mid-month, a trial, a minimum commitment, JPY; drafts refreshed by late
usage, finalized after the grace period with gapless numbers; a second run changes nothing.

The base fee is billed in advance: an opening invoice when the subscription starts (the first
period's fee), then at each period's end one with its usage and the next period's fee."""

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
    [opening] = world.invoices("poppy")
    # issued at the start: the first period's fee in advance, Jan 31 - Feb 28 (the anniversary falls on
    # February's last day): 28 of 28 days, the whole 31.00
    assert before.created == [opening["id"]] and opening["status"] == "draft"
    assert (opening["period_start"], opening["period_end"], opening["period"]) == (at(UTC, 2027, 1, 31),
                                                                                   at(UTC, 2027, 2, 28), "2027-01")
    assert lines(opening) == [("base_fee", "monthly", None, "1", "31.00", 3100)]
    report = world.bill(at(UTC, 2027, 2, 28, 0, 30))
    assert len(report.created) == 1 and report.finalized == [opening["id"]]
    opening, second = world.invoices("poppy")
    assert (opening["status"], opening["number"]) == ("finalized", "TW-000001")
    assert opening["issued_at"] == at(UTC, 2027, 2, 28, 0, 30)
    assert opening["due_at"] == opening["issued_at"] + 30 * 86_400
    # issued Feb 28: the usage of Jan 31 - Feb 28, 150 calls × 0.01 = 1.50 (the 7 calls of Feb 28 belong
    # to the next period); the fee of Feb 28 - Mar 31 in advance: 31 of 31 days, 31.00; 1.50 + 31.00 = 32.50
    assert (second["period_start"], second["period_end"], second["period"]) == (at(UTC, 2027, 2, 28),
                                                                                at(UTC, 2027, 3, 31), "2027-02")
    assert lines(second) == [("usage", "monthly", "calls", "150", "1.50", 150),
                             ("base_fee", "monthly", None, "1", "31.00", 3100)]
    assert totals(second) == ("USD", "32.50", "0.00", "32.50", 3250) and second["status"] == "draft"
    again = world.bill(at(UTC, 2027, 2, 28, 0, 45))
    assert again.created == [] and again.refreshed == [second["id"]] and len(world.invoices("poppy")) == 2
    # after the grace period it is finalized; a month later the next one is drafted
    world.bill(at(UTC, 2027, 2, 28, 1, 30))
    world.bill(at(UTC, 2027, 3, 31, 0, 10))
    _, second, third = world.invoices("poppy")
    assert (second["status"], second["number"], second["issued_at"]) == ("finalized", "TW-000002",
                                                                         at(UTC, 2027, 2, 28, 1, 30))
    # issued Mar 31: the 7 calls of Feb 28 - Mar 31, 0.07; the fee of Mar 31 - Apr 30 (30 of 30 days), 31.00
    assert (third["period_start"], third["period_end"], third["status"]) == (at(UTC, 2027, 3, 31),
                                                                             at(UTC, 2027, 4, 30), "draft")
    assert lines(third) == [("usage", "monthly", "calls", "7", "0.07", 7),
                            ("base_fee", "monthly", None, "1", "31.00", 3100)]


def test_a_plan_change_mid_month_splits_usage_and_prorates_each_fee(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "basic", "currency": "USD", "base_fee": "30"})
    world.post("/plans/basic/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.01"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "62"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "graduated", "tiers": [
        {"up_to": 100, "unit_price": "0"}, {"up_to": None, "unit_price": "0.02"}]})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "basic"}, "tz": "America/New_York",
                                                  "started_at": at(NEW_YORK, 2027, 3, 1)})
    world.bill(at(NEW_YORK, 2027, 3, 1, 0, 30))
    world.bill(at(NEW_YORK, 2027, 3, 1, 1, 30))
    [opening] = world.invoices("poppy")
    # March's fee in advance, on basic: 31 of 31 days, 30.00
    assert (opening["status"], lines(opening)) == ("finalized", [("base_fee", "basic", None, "1", "30.00", 3000)])
    world.change_plan("poppy", "pro", at(NEW_YORK, 2027, 3, 11, 12))
    world.record([*world.calls("poppy", at(NEW_YORK, 2027, 3, 5), 200),
                  *world.calls("poppy", at(NEW_YORK, 2027, 3, 11, 11), 50),     # the change's day, before it
                  *world.calls("poppy", at(NEW_YORK, 2027, 3, 20), 250),
                  *world.calls("poppy", at(NEW_YORK, 2027, 4, 1, 0, 30), 9)])  # April in New York
    world.bill(at(NEW_YORK, 2027, 4, 1, 0, 30))
    _, invoice = world.invoices("poppy")
    # usage: basic Mar 1 - Mar 11 12:00, 250 calls × 0.01 = 2.50; pro from then, 250 calls, 100 free,
    # 150 × 0.02 = 3.00.
    # the fee paid in advance for basic's Mar 11-31 (the change's day is billed on the new plan) is
    # given back: 30 × 21/31 = 20.3225... -> -20.32; pro's Mar 11-31 is charged: 62 × 21/31 = 42.00.
    # April's fee in advance, on pro: 30 of 30 days, 62.00.
    # 2.50 + 3.00 - 20.32 + 42.00 + 62.00 = 89.18 (March alone: 30.00 - 20.32 = 9.68 on basic, 42.00 on pro)
    assert lines(invoice) == [("usage", "basic", "calls", "250", "2.50", 250),
                              ("usage", "pro", "calls", "250", "3.00", 300),
                              ("base_fee_credit", "basic", None, "21/31", "-20.32", -2032),
                              ("base_fee_charge", "pro", None, "21/31", "42.00", 4200),
                              ("base_fee", "pro", None, "1", "62.00", 6200)]
    assert [tier["units"] for tier in invoice["lines"][1]["tiers"]] == ["100", "150"]
    assert [(line["starts_at"], line["ends_at"]) for line in invoice["lines"][2:4]] == [
        (at(NEW_YORK, 2027, 3, 11), at(NEW_YORK, 2027, 4, 1))] * 2
    assert totals(invoice) == ("USD", "89.18", "0.00", "89.18", 8918)
    assert (invoice["period_start"], invoice["period_end"]) == (at(NEW_YORK, 2027, 4, 1), at(NEW_YORK, 2027, 5, 1))


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
    opening, trial = world.invoices("poppy")
    # May's fee in advance: the trial frees May 1-10, 21 of 31 days, 31 × 21/31 = 21.00
    assert lines(opening) == [("base_fee", "trial", None, "21/31", "21.00", 2100)]
    assert opening["lines"][0]["starts_at"] == at(UTC, 2027, 5, 11)
    # on June 1: usage in the trial is billed, 10 × 0.5 = 5.00; June's fee, out of trial, 30 of 30 days: 31.00
    assert lines(trial) == [("usage", "trial", "calls", "10", "5.00", 500),
                            ("base_fee", "trial", None, "1", "31.00", 3100)]
    assert totals(trial)[3] == "36.00"
    opening, committed = world.invoices("digit")
    assert lines(opening) == [("base_fee", "committed", None, "1", "0.00", 0)]
    # 120 × 0.10 = 12.00 (and May's fee, 0.00) against 50 committed: a true-up of 38.00; June's fee 0.00
    assert lines(committed) == [("usage", "committed", "calls", "120", "12.00", 1200),
                                ("minimum_commitment", "committed", None, "1", "38.00", 3800),
                                ("base_fee", "committed", None, "1", "0.00", 0)]
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
    opening, invoice = world.invoices("poppy")
    # April's fee in advance from the start: April 16-30, 15 of 30 days, 1000 × 15/30 = 500 yen
    assert lines(opening) == [("base_fee", "yen", None, "15/30", "500", 500)]
    assert opening["period_start"] == at(tokyo, 2027, 4, 16, 9)
    # on May 1: 3 × 0.5 = 1.5 -> 2 yen (half up; half even would give 2 too, see 2.5 below); May's fee,
    # 31 of 31 days, 1000; 2 + 1000 = 1002
    assert lines(invoice) == [("usage", "yen", "calls", "3", "2", 2), ("base_fee", "yen", None, "1", "1000", 1000)]
    assert totals(invoice) == ("JPY", "1002", "0", "1002", 1002)


def test_late_usage_lands_in_the_draft_and_a_finalized_invoice_never_changes(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.25"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1)})
    world.record(world.calls("poppy", at(UTC, 2027, 7, 31, 23, 59), 2))
    world.bill(at(UTC, 2027, 8, 1, 0, 1))
    # 2 × 0.25 = 0.50, and August's fee of 0.00
    assert totals(world.invoices("poppy")[1])[3] == "0.50"
    world.record(world.calls("poppy", at(UTC, 2027, 7, 31, 23, 58), 3))   # a node flushed late
    world.bill(at(UTC, 2027, 8, 1, 0, 30))
    opening, invoice = world.invoices("poppy")
    # 5 × 0.25 = 1.25
    assert (invoice["status"], totals(invoice)[3], lines(invoice)[0][3]) == ("draft", "1.25", "5")
    assert (opening["status"], opening["number"]) == ("finalized", "TW-000001")   # issued Jul 1, an hour is over
    world.bill(at(UTC, 2027, 8, 1, 1, 0))           # the grace period is over
    world.record(world.calls("poppy", at(UTC, 2027, 7, 31, 23, 57), 4))
    world.bill(at(UTC, 2027, 8, 1, 2, 0))
    _, invoice = world.invoices("poppy")
    assert (invoice["status"], invoice["number"], totals(invoice)[3]) == ("finalized", "TW-000002", "1.25")


def test_a_dry_run_writes_nothing_and_period_selects_a_month(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "10"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1)})
    dry = world.bill(at(UTC, 2027, 9, 1, 0, 1), dry_run=True)
    # issued Jul 1, Aug 1 and Sep 1, each with its month's fee in advance (and no usage)
    assert [(item["period"], item["total"]) for item in dry.planned] == [("2027-07", "10.00"), ("2027-08", "10.00"),
                                                                         ("2027-09", "10.00")]
    assert world.invoices("poppy") == []
    world.bill(at(UTC, 2027, 9, 1, 0, 1), period="2027-08")
    assert [item["period"] for item in world.invoices("poppy")] == ["2027-08"]
    world.bill(at(UTC, 2027, 9, 1, 0, 1))
    assert [item["period"] for item in world.invoices("poppy")] == ["2027-07", "2027-08", "2027-09"]
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
    # her opening invoice needs no usage: billed, July's 31 of 31 days, 10.00
    assert [(i["period"], i["total"]) for i in world.invoices("poppy")] == [("2027-07", "10.00")]
    # digit: July's fee in advance, 10.00; on Aug 1 no calls (0.00) and August's fee, 10.00
    assert [i["total"] for i in world.invoices("digit")] == ["10.00", "10.00"]


def test_a_subscription_cancelled_mid_month_gets_the_unused_days_back(world: Billing) -> None:
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "31"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard", "unit_price": "0.10"})
    created = world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"},
                                                            "started_at": at(UTC, 2027, 5, 1)})
    world.bill(at(UTC, 2027, 5, 1, 0, 30))
    world.bill(at(UTC, 2027, 5, 1, 1, 30))

    async def cancel(db: Database) -> None:
        await subscription_writes.cancel(Catalog(world.settings, db), created["id"], False,
                                         now=at(UTC, 2027, 5, 11, 10))

    world.run(cancel)
    world.record([*world.calls("poppy", at(UTC, 2027, 5, 11, 10), 4),       # its last minute
                  *world.calls("poppy", at(UTC, 2027, 5, 11, 10, 1), 9)])   # after it ended
    world.bill(at(UTC, 2027, 5, 11, 12))
    opening, last = world.invoices("poppy")
    assert (opening["status"], lines(opening)) == ("finalized", [("base_fee", "pro", None, "1", "31.00", 3100)])
    # active May 1-10 (the day it ended on is not billed): May 11-31 paid in advance comes back,
    # 31 × 21/31 = 21.00; 4 calls × 0.10 = 0.40; nothing follows: no fee in advance, an empty period.
    # 0.40 - 21.00 = -20.60: owed to the consumer
    assert (last["period_start"], last["period_end"]) == (at(UTC, 2027, 5, 11, 10, 1), at(UTC, 2027, 5, 11, 10, 1))
    assert lines(last) == [("usage", "pro", "calls", "4", "0.40", 40),
                           ("base_fee_credit", "pro", None, "21/31", "-21.00", -2100)]
    assert totals(last) == ("USD", "-20.60", "0.00", "-20.60", -2060)
    assert world.bill(at(UTC, 2027, 7, 1)).created == []   # nothing after it ended


def test_cancelled_at_the_period_end_no_fee_in_advance_and_one_never_billed_before(world: Billing) -> None:
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "30"})
    created = world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"},
                                                            "started_at": at(UTC, 2027, 6, 1)})
    digit = world.post("/consumers/digit/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 6, 1)})

    async def cancel(db: Database) -> None:
        catalog = Catalog(world.settings, db)
        await subscription_writes.cancel(catalog, created["id"], True, now=at(UTC, 2027, 6, 15))
        await subscription_writes.cancel(catalog, digit["id"], False, now=at(UTC, 2027, 6, 16, 9))

    world.run(cancel)
    world.bill(at(UTC, 2027, 7, 1, 0, 30))
    opening, last = world.invoices("poppy")
    # June's fee in advance, 30 of 30 days: 30.00; on July 1, it ended: no July fee, nothing to give back
    assert lines(opening) == [("base_fee", "pro", None, "1", "30.00", 3000)]
    assert (last["period_start"], last["period_end"], lines(last)) == (at(UTC, 2027, 7, 1), at(UTC, 2027, 7, 1), [])
    # digit was cancelled before any run: his opening invoice bills June 1-15 only, 30 × 15/30 = 15.00,
    # and his last one has nothing to settle
    opening, last = world.invoices("digit")
    assert lines(opening) == [("base_fee", "pro", None, "15/30", "15.00", 1500)]
    assert opening["period_end"] == at(UTC, 2027, 6, 16, 9, 1) and lines(last) == []   # the minute it ended included


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
    # issued Jan 1, Feb 1 and Mar 1, two subscriptions
    assert sum(len(report.created) for report in reports) == 6
    invoices = world.invoices("poppy") + world.invoices("digit")
    assert sorted((item["period"], item["status"]) for item in invoices) == [
        (month, "finalized") for month in ("2027-01", "2027-02", "2027-03") for _ in range(2)]
    assert sorted(item["number"] for item in invoices) == [f"TW-{n:06d}" for n in range(1, 7)]
