"""The printable invoice page in a real headless Chromium: every line, tier and total rendered, and
printed to PDF.

While this module runs, its `browser` keeps Playwright's event loop running in the main thread,
so the module's database work (bootstrap, ledger flush, billing run) runs on a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.conftest import _bootstrap, serve
from tests.billing.test_api_invoices import get, seed
from tests.billing.test_invoices import Billing
from tests.billing.test_usage_ledger import UTC, at
from tests.conftest import make_settings


def on_a_thread(work: Any) -> Any:
    """asyncio.run(work()) on a fresh thread (the main thread's loop belongs to Playwright)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(work()))
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class ThreadedBilling(Billing):
    def run(self, body: Any) -> Any:
        return on_a_thread(lambda: world_run(self, body))


async def world_run(world: Billing, body: Any) -> Any:  # World.run's body, awaited
    from tollway.store.db import Database

    db = Database.from_settings(world.settings)
    try:
        return await body(db)
    finally:
        await db.dispose()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Billing]:
    """On SQLite only: the `settings` fixture's PostgreSQL schema is made with asyncio.run in the main thread."""
    settings = make_settings(tmp_path, "sqlite")
    on_a_thread(lambda: _bootstrap(settings))
    for server in serve(settings):
        yield ThreadedBilling(server.client, settings.with_overrides(invoice_grace_period=3600,
                                                                      invoice_prefix="TW-"))


def test_the_printable_page_renders_every_line_and_prints_to_pdf(world: Billing, browser: Any) -> None:
    seed(world)
    world.bill(at(UTC, 2027, 8, 1, 1, 30))
    world.bill(at(UTC, 2027, 8, 1, 2, 30))
    # issued Aug 1: July's usage, August's base fee in advance
    invoice = get(world.api, "/invoices", consumer="poppy", period="2027-08")["data"][0]
    page = browser.new_page()
    page.goto(f"{world.api.base_url}/invoices/{invoice['id']}.html")
    text = page.inner_text("body")
    assert f"Invoice {invoice['number']}" in text and "poppy" in text and "cus_42" in text
    assert invoice["number"] in ("TW-000001", "TW-000002", "TW-000003", "TW-000004")   # with the opening ones
    assert "2027-08-01 – 2027-09-01" in text
    rows = page.locator("tbody tr.line").all_inner_texts()
    assert len(rows) == len(invoice["lines"]) == 2
    assert "1.50" in rows[0] and "20.00" in rows[1]
    # each line says which period it bills: July's usage in arrears, August's fee in advance
    assert "2027-07-01 – 2027-08-01" in rows[0] and "2027-08-01 – 2027-09-01" in rows[1]
    assert [t.split("\t")[0] for t in page.locator("tbody tr.tier").all_inner_texts()] == [
        "1–100: 100 units × 0", "101–∞: 30 units × 0.05"]
    assert page.inner_text("#total") == "21.50 USD" and page.inner_text("#subtotal") == "21.50 USD"
    assert invoice["due_at"][:10] in page.inner_text("tfoot")
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    page.close()
