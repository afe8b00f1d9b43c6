"""Invoices and credit notes on the Admin API: filters and Kong's pages, the CSV export's fixed columns,
refresh / finalize / void and their 409s, credit notes (reasons, at most what is left) deducted on the
consumer's next invoice.
The printable page is tested in a real browser in tests/test_browser_invoice.py."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from tests.billing.test_invoices import Billing
from tests.billing.test_usage_ledger import UTC, at
from tollway.billing.invoice_documents import EXPORT_COLUMNS
from tollway.config import Settings


@pytest.fixture
def world(api: httpx.Client, settings: Settings) -> Billing:
    return Billing(api, settings.with_overrides(invoice_grace_period=3600, invoice_prefix="TW-"))


def seed(world: Billing) -> None:
    """poppy on pro (USD, 20 a month, calls at 0.05 past 100 free) since July 2027, digit on yen."""
    world.post("/meters", {"name": "calls"})
    world.post("/plans", {"name": "pro", "currency": "USD", "base_fee": "20"})
    world.post("/plans/pro/charges", {"meter": {"name": "calls"}, "model": "graduated", "tiers": [
        {"up_to": 100, "unit_price": "0"}, {"up_to": None, "unit_price": "0.05"}]})
    world.post("/plans", {"name": "yen", "currency": "JPY", "base_fee": "500"})
    world.post("/consumers/poppy/subscriptions", {"plan": {"name": "pro"}, "started_at": at(UTC, 2027, 7, 1),
                                                  "external_customer_id": "cus_42"})
    world.post("/consumers/digit/subscriptions", {"plan": {"name": "yen"}, "started_at": at(UTC, 2027, 7, 1)})
    world.record([*world.calls("poppy", at(UTC, 2027, 7, 10), 130), *world.calls("poppy", at(UTC, 2027, 8, 10), 90)])


def get(api: httpx.Client, path: str, expect: int = 200, **params: Any) -> Any:
    answer = api.get(path, params=params)
    assert answer.status_code == expect, answer.text
    return answer.json() if "json" in answer.headers["content-type"] else answer.text


def test_list_show_and_act_on_invoices(world: Billing) -> None:
    seed(world)
    world.bill(at(UTC, 2027, 8, 1, 0, 30))
    api = world.api
    poppys = sorted(get(api, "/invoices", consumer="poppy")["data"], key=lambda item: item["period"])
    # issued Jul 1: July's fee in advance, 20.00; issued Aug 1: July's usage and August's fee
    assert [(i["period"], i["status"], i["total"], i["total_minor"]) for i in poppys] == [
        ("2027-07", "draft", "20.00", 2000), ("2027-08", "draft", "21.50", 2150)]
    invoice = poppys[1]
    assert invoice["customer"] == {"id": world.ids["poppy"], "username": "poppy", "custom_id": None,
                                   "external_customer_id": "cus_42"}
    # 130 calls: 100 free, 30 × 0.05 = 1.50; 1.50 + 20.00 = 21.50
    assert [(line["kind"], line["amount"]) for line in invoice["lines"]] == [("usage", "1.50"), ("base_fee", "20.00")]
    assert len(get(api, "/invoices")["data"]) == 4
    assert [i["currency"] for i in get(api, "/invoices", status="draft", period="2027-07", consumer="digit")["data"]] \
        == ["JPY"]
    assert get(api, "/invoices", period="2027-09")["data"] == []
    first = get(api, "/invoices", size=1)
    assert len(first["data"]) == 1 and first["next"].startswith("/invoices?offset=")
    assert api.get(first["next"]).json()["data"][0]["id"] != first["data"][0]["id"]
    bad = get(api, "/invoices", 400, status="paid")
    assert bad["name"] == "invalid options" and bad["options"] == {"status": "expected one of: draft, finalized, void"}
    assert get(api, "/invoices", 400, period="2027-13")["options"] == {"period": "expected a month as YYYY-MM"}
    assert get(api, "/invoices/00000000-0000-4000-8000-000000000000", 404) == {"message": "Not found"}
    assert api.post("/invoices/TW-999999/void").status_code == 404
    assert api.post(f"/invoices/{invoice['id']}/refresh").status_code == 200
    final = api.post(f"/invoices/{invoice['id']}/finalize")
    assert final.status_code == 200 and final.json()["number"] == "INV-000001"   # the Admin API's own prefix
    assert get(api, "/invoices/INV-000001")["id"] == invoice["id"]
    again = api.post(f"/invoices/{invoice['id']}/finalize")
    assert again.status_code == 409 and "only a draft invoice can be finalized" in again.json()["message"]
    digit = get(api, "/invoices", consumer="digit", period="2027-07")["data"][0]
    assert api.post(f"/invoices/{digit['id']}/void").json()["status"] == "void"
    assert api.post(f"/invoices/{digit['id']}/void").status_code == 409
    assert api.post(f"/invoices/{digit['id']}/finalize").status_code == 409
    # the next run neither bills the voided period again nor touches the finalized invoice
    world.bill(at(UTC, 2027, 8, 1, 3, 0))
    digits = get(api, "/invoices", consumer="digit")["data"]
    assert sorted((i["period"], i["status"], i["total"]) for i in digits) == [("2027-07", "void", "500"),
                                                                              ("2027-08", "finalized", "500")]
    assert get(api, f"/invoices/{invoice['id']}")["number"] == "INV-000001"


def test_the_finance_export_and_an_invoices_csv(world: Billing) -> None:
    seed(world)
    world.bill(at(UTC, 2027, 9, 1, 0, 30))
    api = world.api
    rows = list(csv.reader(io.StringIO(get(api, "/invoices", format="csv", consumer="poppy"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    body = sorted((r[5], r[6], r[7][:10], r[9], r[10], r[11], r[12], r[13]) for r in rows[1:])
    # issued Jul 1, Aug 1, Sep 1: each month's fee in advance; July's usage (130 calls: 1.50) and
    # August's (90 calls, all free) on the invoice issued at the month's end
    assert body == [("pro", "base_fee", "2027-07-01", "1", "20", "20.00", "2000", "USD"),
                    ("pro", "base_fee", "2027-08-01", "1", "20", "20.00", "2000", "USD"),
                    ("pro", "base_fee", "2027-09-01", "1", "20", "20.00", "2000", "USD"),
                    ("pro", "calls", "2027-07-01", "130", "", "1.50", "150", "USD"),
                    ("pro", "calls", "2027-08-01", "90", "0", "0.00", "0", "USD")]
    ranged = list(csv.reader(io.StringIO(get(api, "/invoices", format="csv", period_from="2027-08",
                                             period_to="2027-09"))))
    assert sorted((row[4], row[6], row[11]) for row in ranged[1:]) == [
        ("digit", "base_fee", "500"), ("digit", "base_fee", "500"), ("poppy", "base_fee", "20.00"),
        ("poppy", "base_fee", "20.00"), ("poppy", "calls", "0.00"), ("poppy", "calls", "1.50")]
    assert get(api, "/invoices", 400, period_to="2027-8")["options"] == {"period_to": "expected a month as YYYY-MM"}
    september = get(api, "/invoices", consumer="poppy", period="2027-09")["data"][0]
    lines = list(csv.reader(io.StringIO(get(api, f"/invoices/{september['id']}.csv"))))
    assert [line[11] for line in lines[1:]] == ["0.00", "20.00"]


def test_a_credit_note_is_deducted_on_the_next_invoice(world: Billing) -> None:
    seed(world)
    world.bill(at(UTC, 2027, 8, 1, 0, 30))
    world.bill(at(UTC, 2027, 8, 1, 1, 30))     # issued Aug 1, finalized: July's usage 1.50 + August's fee 20.00
    api = world.api
    july = get(api, "/invoices", consumer="poppy", period="2027-08")["data"][0]
    assert july["status"] == "finalized"
    refused = api.post("/credit_notes", json={"invoice": july["id"], "amount": "21.51", "reason": "refund"})
    assert refused.status_code == 400 and refused.json()["code"] == 2
    assert set(refused.json()["fields"]) == {"amount", "reason"}
    assert api.post("/credit_notes", json={"invoice": july["id"], "amount": "1.005",
                                           "reason": "other"}).json()["fields"] == {
        "amount": "has more decimals than USD's minor unit"}
    note = api.post("/credit_notes", json={"invoice": {"id": july["id"]}, "amount": "5.25",
                                           "reason": "product_unsatisfactory", "description": "outage on July 9"})
    assert note.status_code == 201, note.text
    assert (note.json()["amount"], note.json()["amount_minor"], note.json()["applied_minor"]) == ("5.25", 525, 0)
    left = api.post("/credit_notes", json={"invoice": july["number"], "amount": "16.26", "reason": "other"})
    assert left.json()["fields"] == {"amount": "is more than what is left to credit on the invoice (1625 minor units)"}
    assert get(api, f"/invoices/{july['id']}")["creditable_minor"] == 1625
    digit = get(api, "/invoices", consumer="digit", period="2027-07")["data"][0]
    assert api.post(f"/invoices/{digit['id']}/void").status_code == 200
    assert api.post("/credit_notes", json={"invoice": digit["id"], "amount": "1", "reason": "other"}).json()[
        "fields"] == {"invoice": "is void: only a finalized invoice can be credited"}
    assert [n["reason"] for n in get(api, "/credit_notes", invoice=july["number"])["data"]] == [
        "product_unsatisfactory"]
    world.bill(at(UTC, 2027, 9, 1, 0, 30))
    world.bill(at(UTC, 2027, 9, 1, 1, 30))
    august = get(api, "/invoices", consumer="poppy", period="2027-09")["data"][0]
    # August's 90 free calls, September's 20.00 base fee, minus the 5.25 credit: 14.75
    assert [(line["kind"], line["amount"]) for line in august["lines"]] == [
        ("usage", "0.00"), ("base_fee", "20.00"), ("credit", "-5.25")]
    assert (august["subtotal"], august["credits"], august["total"], august["total_minor"], august["status"]) == (
        "20.00", "-5.25", "14.75", 1475, "finalized")
    assert get(api, "/credit_notes", consumer="poppy")["data"][0]["applied_minor"] == 525
    world.bill(at(UTC, 2027, 10, 1, 1, 30))
    world.bill(at(UTC, 2027, 10, 1, 2, 30))
    september = get(api, "/invoices", consumer="poppy", period="2027-10")["data"][0]
    assert september["credits"] == "0.00" and september["total"] == "20.00"   # used up
    # voiding August gives its credit back: October deducts it
    assert api.post(f"/invoices/{august['id']}/void").json()["status"] == "void"
    assert get(api, "/credit_notes", consumer="poppy")["data"][0]["applied_minor"] == 0
    world.bill(at(UTC, 2027, 11, 1, 1, 30))
    october = get(api, "/invoices", consumer="poppy", period="2027-11")["data"][0]
    assert (october["credits"], october["total"], october["status"]) == ("-5.25", "14.75", "draft")
