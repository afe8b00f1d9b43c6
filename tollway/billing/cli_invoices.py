"""`tollway invoices list|show|finalize|void|run`: invoices from the command line.

Like `tollway plans apply`, these read and write the database directly, so they work while the
gateway is stopped. `run` takes the billing runs' lock (invoice_run.billing_lock), waiting for a
node's run to end rather than racing it; `--at` bills as of another instant (a fixed clock).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
import orjson

from tollway.billing import invoice_run, invoice_store
from tollway.billing.invoice_documents import invoice_json
from tollway.billing.invoicing import STATUSES
from tollway.clitools import pass_settings
from tollway.config import Settings
from tollway.store.db import Database, run_with_database
from tollway.store.tables import consumers


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]], right: tuple[int, ...] = ()) -> str:
    """Columns padded to their widest cell; the columns in `right` (amounts) aligned right."""
    cells = [tuple("" if value is None else str(value) for value in row) for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                               for i, cell in enumerate(row)).rstrip() for row in cells)


def _instant(text: str | None) -> float | None:
    if text is None:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("expected epoch seconds or an ISO 8601 time with its offset",
                                 param_hint="--at") from None
    if when.tzinfo is None:
        raise click.BadParameter("give the time's offset (2026-12-01T00:00:00+00:00)", param_hint="--at")
    return when.timestamp()


async def _find(db: Database, ident: str) -> dict[str, Any]:
    async with db.connect() as conn:
        found = await invoice_store.find_invoice(conn, ident)
        if found is None:
            raise click.ClickException(f"no invoice '{ident}'")
        lines = await invoice_store.read_lines(conn, [found["id"]])
        return invoice_json(found, lines[found["id"]], await invoice_store.credited_minor(conn, found["id"]))


@click.group("invoices")
def invoices() -> None:
    """Invoices: one per subscription and billing period."""


@invoices.command("list")
@click.option("--consumer", default=None, help="A consumer's id or username.")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--period", default=None, metavar="YYYY-MM", help="Periods that start in this month.")
@pass_settings
def list_command(settings: Settings, consumer: str | None, status: str | None, period: str | None) -> None:
    """Invoices as a table, oldest period first."""
    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.connect() as conn:
            consumer_id = None
            if consumer is not None:
                found = (await conn.execute(consumers.select().where(
                    (consumers.c.id == consumer) | (consumers.c.username == consumer)))).mappings().first()
                if found is None:
                    raise click.ClickException(f"no consumer '{consumer}'")
                consumer_id = found["id"]
            rows = await invoice_store.list_invoices(conn, consumer_id=consumer_id, status=status, period=period,
                                                     size=1_000_000)
        return [invoice_json(row, None) for row in rows]

    found = sorted(run_with_database(settings, work), key=lambda item: (item["period_start_epoch"], item["id"]))
    if not found:
        click.echo("no invoices")
        return
    rows = [(item["number"] or "-", item["id"][:8], item["status"],
             item["customer"].get("username") or item["customer"]["id"][:8], item["period_start"][:10],
             item["period_end"][:10], item["total"], item["currency"], (item["due_at"] or "-")[:10])
            for item in found]
    click.echo(_table(("NUMBER", "ID", "STATUS", "CONSUMER", "FROM", "TO", "TOTAL", "", "DUE"), rows, right=(6,)))


def format_invoice(invoice: dict[str, Any]) -> str:
    """An invoice as a readable page: its facts, then its lines with tiers indented, then totals."""
    customer = invoice["customer"]
    head = [f"invoice {invoice['number'] or '(draft)'}  {invoice['id']}  {invoice['status']}",
            f"consumer {customer.get('username') or '-'}  custom_id {customer.get('custom_id') or '-'}  "
            f"external id {customer.get('external_customer_id') or '-'}",
            f"period {invoice['period_start']} to {invoice['period_end']} ({invoice['tz']})",
            f"issued {invoice['issued_at'] or '-'}  due {invoice['due_at'] or '-'}"]
    rows: list[tuple[Any, ...]] = []
    for line in invoice["lines"]:
        name = line["kind"] if line["kind"] != "usage" else f"{line['meter']} ({line['model']})"
        plan = f"{line['plan']['name']} v{line['plan']['version']}" if line["plan"] else ""
        rows.append((name, plan, line["quantity"], line["unit_price"], line["amount"]))
        for tier in line["tiers"]:
            upper = "" if tier["to"] is None else tier["to"]
            rows.append((f"    {tier['from']}..{upper}", "", tier["units"], tier["unit_price"], tier["amount"]))
    currency = invoice["currency"]
    rows += [("subtotal", "", "", "", invoice["subtotal"]), ("credits", "", "", "", invoice["credits"]),
             (f"total ({currency})", "", "", "", invoice["total"])]
    return "\n".join([*head, "", _table(("LINE", "PLAN", "QUANTITY", "UNIT PRICE", "AMOUNT"), rows, right=(2, 3, 4))])


@invoices.command("show")
@click.argument("invoice")
@click.option("--json", "as_json", is_flag=True, help="Print GET /invoices/{invoice}'s answer.")
@pass_settings
def show_command(settings: Settings, invoice: str, as_json: bool) -> None:
    """One invoice (by id or number) with its lines and tiers."""
    found = run_with_database(settings, lambda db: _find(db, invoice))
    click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() if as_json else format_invoice(found))


@invoices.command("finalize")
@click.argument("invoice")
@pass_settings
def finalize_command(settings: Settings, invoice: str) -> None:
    """Finalize a draft now: it gets its number, issue and due dates."""
    async def work(db: Database) -> dict[str, Any]:
        found = await _find(db, invoice)
        try:
            await invoice_run.bill_one(db, settings, found["id"], finalize=True)
        except invoice_store.InvoiceStateError as exc:
            raise click.ClickException(f"invoice is {found['status']}: {exc}") from None
        return await _find(db, found["id"])

    done = run_with_database(settings, work)
    click.echo(f"finalized {done['number']}: {done['total']} {done['currency']}, due {done['due_at'][:10]}")


@invoices.command("void")
@click.argument("invoice")
@pass_settings
def void_command(settings: Settings, invoice: str) -> None:
    """Void an invoice (a finalized one keeps its number)."""
    async def work(db: Database) -> dict[str, Any]:
        found = await _find(db, invoice)
        try:
            async with db.begin() as conn:
                await invoice_store.void(conn, found["id"], int(datetime.now().timestamp()))
        except invoice_store.InvoiceStateError as exc:
            raise click.ClickException(str(exc)) from None
        return found

    found = run_with_database(settings, work)
    click.echo(f"voided {found['number'] or found['id']}")


@invoices.command("run")
@click.option("--period", default=None, metavar="YYYY-MM", help="Only periods that start in this month.")
@click.option("--dry-run", is_flag=True, help="Show the drafts it would create; write nothing.")
@click.option("--at", "at", default=None, metavar="TIME", help="Bill as of this instant (epoch or ISO 8601).")
@pass_settings
def run_command(settings: Settings, period: str | None, dry_run: bool, at: str | None) -> None:
    """Bill the periods that ended: drafts, refreshes, finalizing.

    A draft for each billing period that ended, every draft refreshed from the ledger, and those
    past the grace period (invoice_grace_period) finalized.
    """
    instant = _instant(at)

    def clock() -> float:
        return instant if instant is not None else datetime.now().timestamp()

    async def work(db: Database) -> invoice_run.RunReport:
        async with invoice_run.billing_lock(db, wait=True):
            return await invoice_run.run(db, settings, clock, period=period, dry_run=dry_run)

    report = run_with_database(settings, work)
    if dry_run:
        rows = [(item["period"], orjson.loads(item["customer"]).get("username"), item["total"], item["currency"],
                 len(item["lines"])) for item in report.planned]
        click.echo(_table(("PERIOD", "CONSUMER", "TOTAL", "", "LINES"), rows, right=(2,)) if rows
                   else "nothing to bill")
        click.echo(f"dry run: {len(report.planned)} draft(s) not created")
        return
    click.echo(f"{len(report.created)} draft(s) created, {len(report.refreshed)} refreshed, "
               f"{len(report.finalized)} finalized, {report.skipped} skipped")
    for failure in report.failed:
        click.echo(f"not billed: subscription {failure['subscription']}: {failure['error']}", err=True)
