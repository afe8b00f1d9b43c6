"""`tollway invoices run|list|show|finalize|void` on a real ledger, the clock fixed with --at."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner, Result

from tests.billing.test_api_invoices import seed
from tests.billing.test_invoices import Billing
from tests.billing.test_usage_ledger import UTC, at
from tollway.billing.cli_invoices import invoices
from tollway.config import Settings


@pytest.fixture
def world(api: httpx.Client, settings: Settings) -> Billing:
    return Billing(api, settings)


def cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(invoices, list(args), obj={"settings": settings})


def test_run_list_show_finalize_and_void(world: Billing, settings: Settings) -> None:
    seed(world)
    dry = cli(settings, "run", "--dry-run", "--at", "2027-08-01T00:30:00+00:00")
    assert dry.exit_code == 0, dry.output
    head, *planned, done = dry.output.splitlines()
    assert head.split() == ["PERIOD", "CONSUMER", "TOTAL", "LINES"] and done == "dry run: 4 draft(s) not created"
    # issued Jul 1 (July's fee in advance) and Aug 1 (July's usage, August's fee)
    assert sorted(line.split() for line in planned) == [["2027-07", "digit", "500", "JPY", "1"],
                                                        ["2027-07", "poppy", "20.00", "USD", "1"],
                                                        ["2027-08", "digit", "500", "JPY", "1"],
                                                        ["2027-08", "poppy", "21.50", "USD", "2"]]
    assert cli(settings, "list").output == "no invoices\n"
    ran = cli(settings, "run", "--at", str(at(UTC, 2027, 8, 1, 0, 30)))
    assert ran.output == "4 draft(s) created, 0 refreshed, 0 finalized, 0 skipped\n"
    listed = cli(settings, "list", "--consumer", "poppy").output.splitlines()
    assert listed[0].split() == ["NUMBER", "ID", "STATUS", "CONSUMER", "FROM", "TO", "TOTAL", "DUE"]
    assert listed[1].split()[2:] == ["draft", "poppy", "2027-07-01", "2027-08-01", "20.00", "USD", "-"]
    assert listed[2].split()[2:] == ["draft", "poppy", "2027-08-01", "2027-09-01", "21.50", "USD", "-"]
    invoice_id = world.invoices("poppy")[1]["id"]
    shown = cli(settings, "show", invoice_id).output.splitlines()
    assert shown[0] == f"invoice (draft)  {invoice_id}  draft"
    assert [line.split() for line in shown[6:]] == [
        ["calls", "(graduated)", "pro", "v1", "130", "1.50"],
        ["1..100", "100", "0", "0"],
        ["101..", "30", "0.05", "1.5"],
        ["base_fee", "pro", "v1", "1", "20", "20.00"],
        ["subtotal", "21.50"], ["credits", "0.00"], ["total", "(USD)", "21.50"]]
    finalized = cli(settings, "finalize", invoice_id)
    assert finalized.output.startswith("finalized INV-000001: 21.50 USD, due ")
    assert "invoice is finalized" in cli(settings, "finalize", "INV-000001").output
    assert cli(settings, "void", "INV-000001").output == "voided INV-000001\n"
    assert cli(settings, "list", "--status", "void").output.splitlines()[1].split()[:3] == ["INV-000001",
                                                                                           invoice_id[:8], "void"]
    assert "no invoice 'nope'" in cli(settings, "show", "nope").output
    assert cli(settings, "run", "--at", "yesterday").exit_code == 2
