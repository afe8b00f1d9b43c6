"""The billing run: drafts for the invoices due, refreshed until finalized after the grace period.

    run(db, settings, clock)   one pass over every subscription, at the clock's now:
      1. a draft for each invoice due (invoicing.issues: at the start, the first period's base fee
         in advance; at each period's end, its usage and the next period's base fee) not yet written;
      2. every draft refreshed from the ledger, so usage flushed late lands in its own period;
      3. a draft issued `invoice_grace_period` ago or more is finalized instead.

Reads go first (subscriptions, their invoices, plan versions, ledger figures for every bill at once,
grouped as ledger_usage.read_many groups them); then writes, BATCH invoices per transaction, each
invoice whole (invoice_store). Nothing counts on being the only run: the unique (subscription, period_start) and
the draft-only updates make concurrent runs on several nodes safe. `BillingLock` keeps the node
services from doing the same work twice: a PostgreSQL advisory lock; SQLite has one writer anyway.
The clock is handed in, so tests close a period with a fixed one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.billing import invoice_store, plan_store, tables
from tollway.billing.advance_fees import FeeSpan
from tollway.billing.daos import SUBSCRIPTIONS
from tollway.billing.invoicing import Bill, Credit, InvoiceLine, Totals, issues, segments
from tollway.billing.ledger_usage import RetentionExceeded, read_many
from tollway.billing.meters import Figure
from tollway.billing.subscription_writes import timeline_of
from tollway.billing.subscriptions import Phase
from tollway.billing.versions import PlanVersion
from tollway.config import Settings
from tollway.store.db import Database
from tollway.store.entities.dao import Dao
from tollway.store.tables import consumers

log = logging.getLogger(__name__)

BATCH = 500          # new drafts written per transaction (each whole or not at all)
LOCK_KEY = 0x746F6C6C77617969  # "tollwayi": the advisory lock of billing runs
_DAO = Dao(SUBSCRIPTIONS)
Clock = Callable[[], float]


@dataclass
class RunReport:
    """What one run did (or, dry, would do)."""

    created: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    skipped: int = 0          # periods another run billed first, drafts that changed state meanwhile
    failed: list[dict[str, Any]] = field(default_factory=list)  # bills the ledger cannot price exactly
    planned: list[dict[str, Any]] = field(default_factory=list)  # dry run: the drafts it would write

    def to_json(self) -> dict[str, Any]:
        return {"created": len(self.created), "refreshed": len(self.refreshed), "finalized": len(self.finalized),
                "skipped": self.skipped, "failed": self.failed, "planned": self.planned}


@dataclass(frozen=True)
class _Pending:
    bill: Bill
    invoice: dict[str, Any] | None  # the draft it refreshes, or None for a new one


class _Credits:
    """Credit notes left to deduct per consumer and currency, handed out once per run."""

    def __init__(self, found: dict[tuple[str, str], list[Credit]]) -> None:
        self.found = found

    def take(self, consumer_id: str, currency: str) -> tuple[Credit, ...]:
        return tuple(self.found.pop((consumer_id, currency), ()))


async def _subscriptions(conn: AsyncConnection, only: str | None) -> list[dict[str, Any]]:
    t = tables.subscriptions
    statement = select(t).order_by(t.c.id)
    if only is not None:
        statement = statement.where(t.c.id == only)
    rows = await conn.execute(statement)
    return [_DAO.to_entity(row) for row in rows.mappings()]


async def _versions(conn: AsyncConnection,
                    subscriptions: Sequence[dict[str, Any]]) -> dict[tuple[str, int], PlanVersion]:
    """Every plan version the subscriptions' phases name, each read once."""
    known: dict[tuple[str, int], PlanVersion] = {}
    for subscription in subscriptions:
        for phase in timeline_of(subscription).phases:
            key = (phase.plan_id, phase.version)
            if key not in known:
                stored = await plan_store.read_version(conn, *key)
                if stored is None:  # a phase names a version recorded before it: never missing
                    raise LookupError(f"plan {key[0]} has no version {key[1]}")
                known[key] = stored.version
    return known


async def _customers(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(select(consumers.c.id, consumers.c.username, consumers.c.custom_id))
    return {row.id: {"username": row.username, "custom_id": row.custom_id} for row in rows}


async def _invoices(conn: AsyncConnection, only: str | None) -> dict[str, list[dict[str, Any]]]:
    i = tables.invoices
    statement = select(i.c.id, i.c.subscription_id, i.c.period_start, i.c.period_end, i.c.status, i.c.period,
                       i.c.consumer_id)
    if only is not None:
        statement = statement.where(i.c.subscription_id == only)
    rows = await conn.execute(statement)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows.mappings():
        found.setdefault(row["subscription_id"], []).append(dict(row))
    return found


async def _advance_fees(conn: AsyncConnection, invoice_ids: Sequence[str]) -> dict[str, list[FeeSpan]]:
    """invoice id -> the base fees it bills in advance (its `base_fee` lines)."""
    line = tables.invoice_lines
    found: dict[str, list[FeeSpan]] = {}
    for start in range(0, len(invoice_ids), BATCH):
        rows = await conn.execute(select(line.c.invoice_id, line.c.plan_id, line.c.plan_name, line.c.plan_version,
                                         line.c.unit_price, line.c.starts_at, line.c.ends_at)
                                  .where(line.c.invoice_id.in_(invoice_ids[start:start + BATCH]),
                                         line.c.kind == "base_fee"))
        for row in rows:
            found.setdefault(row.invoice_id, []).append(FeeSpan(row.plan_id, row.plan_name, row.plan_version,
                                                                Decimal(row.unit_price), row.starts_at, row.ends_at))
    return found


async def _collect(conn: AsyncConnection, now: int, month: str | None,
                   only: str | None = None) -> tuple[list[_Pending], dict[str, Any]]:
    """Every bill to write (of subscription `only`, if given): new periods, then drafts; and the
    customers they bill."""
    subscriptions = await _subscriptions(conn, only)
    known = await _versions(conn, subscriptions)

    def version_of(phase: Phase) -> PlanVersion:
        return known[(phase.plan_id, phase.version)]

    invoices = await _invoices(conn, only)
    customers = await _customers(conn)
    pending: list[_Pending] = []
    # what each bill settles its arrears period's fee against: the advance fee as this run writes it
    # (a bill of the same run), or else as the invoice issued at the period's start stored it
    in_run: dict[tuple[str, int], tuple[FeeSpan, ...]] = {}
    stored: dict[tuple[str, int], str] = {}
    for subscription in subscriptions:
        timeline = timeline_of(subscription)
        taken = {invoice["period_start"]: invoice for invoice in invoices.get(subscription["id"], [])}
        # a draft is refreshed whatever the clock says (POST /invoices/{id}/refresh before its date)
        drafts = [start for start, invoice in taken.items() if invoice["status"] == "draft"]
        for issue in issues(timeline, max([now, *drafts])):
            invoice = taken.get(issue.at)
            if (month is not None and issue.month != month) or (invoice is None and issue.at > now) or (
                    invoice is not None and invoice["status"] != "draft"):
                continue
            bill = Bill(subscription, timeline, issue, segments(timeline, issue.arrears, version_of),
                        segments(timeline, issue.advance, version_of))
            in_run[(subscription["id"], issue.at)] = bill.advance_fees
            if issue.arrears is not None and issue.arrears.starts_at in taken:
                stored[(subscription["id"], issue.arrears.starts_at)] = taken[issue.arrears.starts_at]["id"]
            pending.append(_Pending(bill, invoice))
    fees = await _advance_fees(conn, sorted(set(stored.values())))
    consumer_ids = sorted({item.bill.subscription["consumer"]["id"] for item in pending})
    credits = _Credits(await invoice_store.available_credits(conn, consumer_ids))
    priced = []
    # credit notes go to a consumer's oldest period first (a draft still in its grace period before a new one)
    for item in sorted(pending, key=lambda item: item.bill.issue.at):
        consumer_id = item.bill.subscription["consumer"]["id"]
        arrears = item.bill.issue.arrears
        key = (item.bill.subscription["id"], -1 if arrears is None else arrears.starts_at)
        billed = in_run[key] if key in in_run else tuple(fees.get(stored.get(key, ""), ()))
        bill = dataclasses.replace(item.bill, billed=billed, credits=credits.take(consumer_id, item.bill.currency.code))
        priced.append(_Pending(bill, item.invoice))
    return priced, customers


async def _figures(conn: AsyncConnection, settings: Settings, pending: Sequence[_Pending],
                   now: int, report: RunReport) -> list[list[int] | None]:
    """Each bill's figures, read in as few statements as read_many can; None for a bill whose figures
    the ledger no longer holds exactly (RetentionExceeded: reported, the others are billed)."""
    # read_many answers per consumer: a consumer's second bill (two periods ended) goes in a second round.
    rounds: list[list[tuple[int, str, tuple[Figure, ...]]]] = []
    seen: dict[str, int] = {}
    found: list[list[int] | None] = [None] * len(pending)
    for index, item in enumerate(pending):
        if not item.bill.figures:   # an opening invoice: no usage
            found[index] = []
            continue
        consumer = item.bill.subscription["consumer"]["id"]
        number = seen[consumer] = seen.get(consumer, -1) + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append((index, consumer, item.bill.figures))
    for batch in rounds:
        try:
            answers = await read_many(conn, settings, [(consumer, figures) for _, consumer, figures in batch], now)
        except RetentionExceeded:
            answers = {}
            for index, consumer, figures in batch:
                try:
                    answers.update(await read_many(conn, settings, [(consumer, figures)], now))
                except RetentionExceeded as exc:
                    report.failed.append({"subscription": pending[index].bill.subscription["id"], "error": str(exc)})
                    log.error("billing run: subscription %s not billed: %s", pending[index].bill.subscription["id"],
                              exc)
        for index, consumer, _figures in batch:
            found[index] = answers.get(consumer)
    return found


def _customer(bill: Bill, customers: dict[str, Any]) -> dict[str, Any]:
    consumer_id = bill.subscription["consumer"]["id"]
    return {"id": consumer_id, **customers.get(consumer_id, {"username": None, "custom_id": None}),
            "external_customer_id": bill.subscription.get("external_customer_id")}


def _due(settings: Settings, now: int) -> int:
    return now + settings.invoice_net_terms * 86_400


async def run(db: Database, settings: Settings, clock: Clock = time.time, *, period: str | None = None,
              dry_run: bool = False) -> RunReport:
    """One billing run at `clock()`: see the module docstring. `period` (YYYY-MM) limits it to the
    periods that start in that month (in each subscription's zone); `dry_run` writes nothing."""
    now = int(clock())
    report = RunReport()
    async with db.connect() as conn:
        pending, customers = await _collect(conn, now, period)
        figures = await _figures(conn, settings, pending, now, report)
    new: list[invoice_store.NewInvoice] = []
    drafts: list[invoice_store.DraftUpdate] = []
    for item, counts in zip(pending, figures, strict=True):
        if counts is None:
            continue
        lines, totals = item.bill.lines(counts)
        if item.invoice is None:
            new.append(_new_invoice(item.bill, lines, totals, customers, now))
        else:
            final = now >= item.invoice["period_start"] + settings.invoice_grace_period
            drafts.append(invoice_store.DraftUpdate(item.invoice["id"], lines, totals, final,
                                                    item.bill.issue.period_end))
    if not dry_run:
        for start in range(0, len(drafts), BATCH):
            await _update_drafts(db, settings, drafts[start:start + BATCH], now, report)
    if dry_run:
        report.planned = [{**invoice.row, "lines": [line.to_row() for line in invoice.lines]} for invoice in new]
        return report
    for start in range(0, len(new), BATCH):
        async with db.begin() as conn:
            inserted = await invoice_store.insert_drafts(conn, new[start:start + BATCH])
        report.created += inserted
        report.skipped += min(BATCH, len(new) - start) - len(inserted)
    return report


def _new_invoice(bill: Bill, lines: list[InvoiceLine], totals: Totals, customers: dict[str, Any],
                 now: int) -> invoice_store.NewInvoice:
    issue = bill.issue
    row = invoice_store.draft_row(subscription=bill.subscription, consumer_id=bill.subscription["consumer"]["id"],
                                  month=issue.month, starts_at=issue.at, ends_at=issue.period_end,
                                  tz=bill.timeline.tz.key, totals=totals, customer=_customer(bill, customers),
                                  now=now)
    return invoice_store.NewInvoice(row, lines)


async def _update_drafts(db: Database, settings: Settings, updates: Sequence[invoice_store.DraftUpdate], now: int,
                         report: RunReport) -> None:
    """A batch of drafts refreshed or finalized in one transaction, each invoice whole; if a credit
    note was applied meanwhile, the batch is rolled back and written again one invoice at a time."""
    try:
        async with db.begin() as conn:
            written = [await invoice_store.write_drafts(conn, updates, prefix=settings.invoice_prefix, now=now,
                                                        due_at=_due(settings, now))]
    except invoice_store.InvoiceStateError:
        written = []
        for update in updates:
            try:
                async with db.begin() as conn:
                    written.append(await invoice_store.write_drafts(conn, [update], prefix=settings.invoice_prefix,
                                                                    now=now, due_at=_due(settings, now)))
            except invoice_store.InvoiceStateError as exc:
                log.info("billing run: invoice %s left as it is: %s", update.invoice_id, exc)
                report.skipped += 1
    for done in written:
        report.refreshed += done.refreshed
        report.finalized += done.finalized
        report.skipped += len(done.skipped)


async def bill_one(db: Database, settings: Settings, invoice_id: str, clock: Clock = time.time, *,
                   finalize: bool) -> None:
    """Refresh one draft from the ledger now, or finalize it now (POST /invoices/{id}/refresh|finalize).
    InvoiceStateError when it is not a draft."""
    now = int(clock())
    async with db.connect() as conn:
        invoice = await invoice_store.read_invoice(conn, invoice_id)
        if invoice is None or invoice["status"] != "draft":
            raise invoice_store.InvoiceStateError("only a draft invoice can be " +
                                                  ("finalized" if finalize else "refreshed"))
        pending, _customers_found = await _collect(conn, now, None, invoice["subscription_id"])
        mine = [item for item in pending if item.invoice is not None and item.invoice["id"] == invoice_id]
        report = RunReport()
        figures = await _figures(conn, settings, mine, now, report)
    if figures[0] is None:
        raise RetentionExceeded(report.failed[0]["error"])
    lines, totals = mine[0].bill.lines(figures[0])
    async with db.begin() as conn:
        update = invoice_store.DraftUpdate(invoice_id, lines, totals, finalize, mine[0].bill.issue.period_end)
        written = await invoice_store.write_drafts(conn, [update], prefix=settings.invoice_prefix, now=now,
                                                   due_at=_due(settings, now))
    if written.skipped:
        action = "finalized" if finalize else "refreshed"
        raise invoice_store.InvoiceStateError(f"only a draft invoice can be {action}")


@asynccontextmanager
async def billing_lock(db: Database, *, wait: bool) -> AsyncIterator[bool]:
    """Whether this process holds the billing runs' lock for the block: a session advisory lock on
    PostgreSQL (`wait`: until it is free); on SQLite always True (one writer; the constraints suffice)."""
    if db.dialect != "postgresql":
        yield True
        return
    async with db.connect() as conn:
        if wait:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            held = True
        else:
            held = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})).scalar())
        await conn.commit()
        try:
            yield held
        finally:
            if held:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                await conn.commit()
