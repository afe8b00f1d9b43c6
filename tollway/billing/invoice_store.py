"""Invoices in the database: drafts written whole, refreshed, finalized with a gapless number, voided.

Every write is one transaction that leaves an invoice whole or untouched (a kill -9 midway loses
the transaction, never half an invoice):

    insert_drafts   INSERT ... ON CONFLICT DO NOTHING on (subscription_id, period_start): a period
                    another run (or node) billed first is skipped, never billed twice; lines are
                    written only for the invoices this transaction inserted
    write_drafts    drafts refreshed (lines replaced, totals updated) only while still drafts, and
                    those due finalized: numbers taken from invoice_sequences in the same
                    transaction that sets the status (a rolled back finalization gives its numbers
                    back: no gaps), credit notes marked applied only if they still have that much left
    void            a draft or finalized invoice becomes void (its number stays taken)

Amounts are stored as the text of their Decimal and as integers of minor units, as the API shows them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Insert, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.billing import tables
from tollway.billing.invoicing import Credit, InvoiceLine, Totals

INVOICES, LINES, NOTES, SEQUENCES = tables.invoices, tables.invoice_lines, tables.credit_notes, tables.invoice_sequences


class InvoiceStateError(Exception):
    """The invoice is not in a state that allows this (finalizing a void one, refreshing a final one)."""


@dataclass(frozen=True)
class NewInvoice:
    """A draft to write: its invoice row (without lines) and its lines."""

    row: dict[str, Any]
    lines: Sequence[InvoiceLine]


def _line_rows(invoice_id: str, lines: Sequence[InvoiceLine]) -> list[dict[str, Any]]:
    rows = []
    for position, line in enumerate(lines):
        row = line.to_row()
        row["tiers"] = orjson.dumps(row["tiers"]).decode()
        row["proration"] = None if row["proration"] is None else orjson.dumps(row["proration"]).decode()
        rows.append({"id": str(uuid.uuid4()), "invoice_id": invoice_id, "position": position, **row})
    return rows


def _insert_ignoring_duplicates(conn: AsyncConnection) -> Insert:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(INVOICES).on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=["subscription_id", "period_start"])


async def insert_drafts(conn: AsyncConnection, drafts: Sequence[NewInvoice]) -> list[str]:
    """Insert drafts with their lines; the ids of those inserted (a period already billed is skipped).
    INSERT ... ON CONFLICT DO NOTHING for them all (one statement, many parameter sets), then the ids
    found: each draft's id is new, so a draft whose id is there was inserted here; then its lines."""
    if not drafts:
        return []
    await conn.execute(_insert_ignoring_duplicates(conn), [draft.row for draft in drafts])
    ids = [draft.row["id"] for draft in drafts]
    inserted = {row[0] for row in await conn.execute(select(INVOICES.c.id).where(INVOICES.c.id.in_(ids)))}
    rows = [row for draft in drafts if draft.row["id"] in inserted for row in _line_rows(draft.row["id"], draft.lines)]
    if rows:
        await conn.execute(insert(LINES), rows)
    return [draft.row["id"] for draft in drafts if draft.row["id"] in inserted]


def draft_row(*, subscription: dict[str, Any], consumer_id: str, month: str, starts_at: int, ends_at: int, tz: str,
              totals: Totals, customer: dict[str, Any], now: int) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "subscription_id": subscription["id"],
            "consumer_id": consumer_id, "period": month, "period_start": starts_at, "period_end": ends_at, "tz": tz,
            "status": "draft", "number": None, "issued_at": None, "due_at": None, "voided_at": None,
            **totals.to_row(), "customer": orjson.dumps(customer).decode()}


@dataclass(frozen=True)
class DraftUpdate:
    """A draft's lines and totals as the ledger has them now; `final`: finalize it as well."""

    invoice_id: str
    lines: Sequence[InvoiceLine]
    totals: Totals
    final: bool
    period_end: int           # the end of the period it bills in advance (moves if the subscription ends in it)


@dataclass
class Written:
    refreshed: list[str]
    finalized: list[str]
    skipped: list[str]        # no longer drafts: nothing written


def _totals(totals: Totals) -> dict[str, Any]:
    row = totals.to_row()
    row.pop("currency")
    return row


async def write_drafts(conn: AsyncConnection, updates: Sequence[DraftUpdate], *, prefix: str, now: int,
                       due_at: int) -> Written:
    """Refresh drafts and finalize those marked final, in the caller's transaction, each invoice whole.

    The first statement updates the totals of those still drafts: an invoice no longer a draft is
    skipped with nothing written; the write lock (SQLite) or the row locks (PostgreSQL) it takes
    queue a concurrent writer, which then finds the invoices no longer drafts. The finalized take
    consecutive numbers with one update of their prefix's sequence: a rolled back transaction gives
    them back, so numbers have no gaps. InvoiceStateError when a credit note no longer has what a line
    deducts (applied by a concurrent run): the caller rolls back."""
    written = Written([], [], [])
    if not updates:
        return written
    totals = [{"key": item.invoice_id, "period_end": item.period_end, **_totals(item.totals)} for item in updates]
    await conn.execute(update(INVOICES).where(INVOICES.c.id == bindparam("key"), INVOICES.c.status == "draft")
                       .values(updated_at=now, **{name: bindparam(name) for name in totals[0] if name != "key"}),
                       totals)
    ids = [item.invoice_id for item in updates]
    drafts = {row[0] for row in await conn.execute(select(INVOICES.c.id).where(INVOICES.c.id.in_(ids),
                                                                               INVOICES.c.status == "draft"))}
    kept = [item for item in updates if item.invoice_id in drafts]
    written.skipped = [item.invoice_id for item in updates if item.invoice_id not in drafts]
    if not kept:
        return written
    await conn.execute(delete(LINES).where(LINES.c.invoice_id.in_([item.invoice_id for item in kept])))
    rows = [row for item in kept for row in _line_rows(item.invoice_id, item.lines)]
    if rows:
        await conn.execute(insert(LINES), rows)
    final = [item for item in kept if item.final]
    for item in final:
        await _apply_credits(conn, item.lines, now)
    if final:
        last = await take_numbers(conn, prefix, len(final))
        numbered = [{"key": item.invoice_id, "number": f"{prefix}{last - len(final) + 1 + index:06d}"}
                    for index, item in enumerate(final)]
        await conn.execute(update(INVOICES).where(INVOICES.c.id == bindparam("key"))
                           .values(status="finalized", number=bindparam("number"), issued_at=now, due_at=due_at),
                           numbered)
    written.finalized = [item.invoice_id for item in final]
    written.refreshed = [item.invoice_id for item in kept if not item.final]
    return written


async def _apply_credits(conn: AsyncConnection, lines: Sequence[InvoiceLine], now: int) -> None:
    for line in lines:
        if line.credit_note_id is not None:
            taken = -line.amount_minor
            done = await conn.execute(update(NOTES).where(NOTES.c.id == line.credit_note_id,
                                                          NOTES.c.amount_minor - NOTES.c.applied_minor >= taken)
                                      .values(applied_minor=NOTES.c.applied_minor + taken, updated_at=now))
            if done.rowcount != 1:
                raise InvoiceStateError(f"credit note {line.credit_note_id} was applied meanwhile")


async def take_numbers(conn: AsyncConnection, prefix: str, count: int) -> int:
    """Take `count` numbers of `prefix` in the caller's transaction (rolled back with it); the last one."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(dialect.insert(SEQUENCES).values(prefix=prefix, last_number=0)
                       .on_conflict_do_nothing(index_elements=["prefix"]))
    taken = await conn.execute(update(SEQUENCES).where(SEQUENCES.c.prefix == prefix)
                               .values(last_number=SEQUENCES.c.last_number + count)
                               .returning(SEQUENCES.c.last_number))
    return int(taken.scalar_one())


async def void(conn: AsyncConnection, invoice_id: str, now: int) -> None:
    """Void a draft or finalized invoice. The credit notes a finalized one deducted are given back
    (deducted again on the consumer's next invoice). The first statement locks the invoice, so its
    status read next cannot change under the voiding."""
    done = await conn.execute(update(INVOICES).where(INVOICES.c.id == invoice_id, INVOICES.c.status != "void")
                              .values(updated_at=now))
    if done.rowcount != 1:
        raise InvoiceStateError("the invoice is already void")
    status = (await conn.execute(select(INVOICES.c.status).where(INVOICES.c.id == invoice_id))).scalar_one()
    if status == "finalized":
        credits = await conn.execute(select(LINES.c.credit_note_id, LINES.c.amount_minor)
                                     .where(LINES.c.invoice_id == invoice_id, LINES.c.credit_note_id.is_not(None)))
        for note_id, amount_minor in credits.all():
            await conn.execute(update(NOTES).where(NOTES.c.id == note_id)
                               .values(applied_minor=NOTES.c.applied_minor + amount_minor, updated_at=now))
    await conn.execute(update(INVOICES).where(INVOICES.c.id == invoice_id).values(status="void", voided_at=now))


async def available_credits(conn: AsyncConnection, consumer_ids: Sequence[str]) -> dict[tuple[str, str], list[Credit]]:
    """(consumer, currency) -> credit notes with something left to deduct, oldest first."""
    if not consumer_ids:
        return {}
    left = NOTES.c.amount_minor - NOTES.c.applied_minor
    rows = await conn.execute(select(NOTES.c.id, NOTES.c.consumer_id, NOTES.c.currency, left.label("left"))
                              .where(left > 0, NOTES.c.consumer_id.in_(list(consumer_ids)))
                              .order_by(NOTES.c.created_at, NOTES.c.id))
    found: dict[tuple[str, str], list[Credit]] = {}
    for row in rows:
        found.setdefault((row.consumer_id, row.currency), []).append(Credit(row.id, int(row.left)))
    return found


async def credited_minor(conn: AsyncConnection, invoice_id: str) -> int:
    """What credit notes already take back of an invoice."""
    found = await conn.execute(select(func.coalesce(func.sum(NOTES.c.amount_minor), 0))
                               .where(NOTES.c.invoice_id == invoice_id))
    return int(found.scalar_one())


async def insert_credit_note(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(NOTES), row)


async def read_invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    found = (await conn.execute(select(INVOICES).where(INVOICES.c.id == invoice_id))).mappings().first()
    return None if found is None else dict(found)


async def find_invoice(conn: AsyncConnection, ident: str) -> dict[str, Any] | None:
    """By id, or else by number."""
    found = await read_invoice(conn, ident)
    if found is None:
        row = (await conn.execute(select(INVOICES).where(INVOICES.c.number == ident))).mappings().first()
        found = None if row is None else dict(row)
    return found


async def read_lines(conn: AsyncConnection, invoice_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each invoice's lines in order, tiers and proration decoded."""
    found: dict[str, list[dict[str, Any]]] = {invoice_id: [] for invoice_id in invoice_ids}
    if not invoice_ids:
        return found
    rows = await conn.execute(select(LINES).where(LINES.c.invoice_id.in_(list(invoice_ids)))
                              .order_by(LINES.c.invoice_id, LINES.c.position))
    for row in rows.mappings():
        line = dict(row)
        line["tiers"] = orjson.loads(line["tiers"]) if line["tiers"] else []
        line["proration"] = orjson.loads(line["proration"]) if line["proration"] else None
        found[line["invoice_id"]].append(line)
    return found


async def list_invoices(conn: AsyncConnection, *, consumer_id: str | None = None, status: str | None = None,
                        period: str | None = None, period_from: str | None = None, period_to: str | None = None,
                        after: str | None = None, size: int = 100) -> list[dict[str, Any]]:
    """A page of invoices by id, with the given filters (periods as YYYY-MM, from and to inclusive)."""
    conditions = [column == value for column, value in ((INVOICES.c.consumer_id, consumer_id),
                                                        (INVOICES.c.status, status), (INVOICES.c.period, period))
                  if value is not None]
    if period_from is not None:
        conditions.append(INVOICES.c.period >= period_from)
    if period_to is not None:
        conditions.append(INVOICES.c.period <= period_to)
    if after is not None:
        conditions.append(INVOICES.c.id > after)
    statement = select(INVOICES).order_by(INVOICES.c.id).limit(size)
    if conditions:
        statement = statement.where(and_(*conditions))
    return [dict(row) for row in (await conn.execute(statement)).mappings()]


async def list_credit_notes(conn: AsyncConnection, *, invoice_id: str | None = None, consumer_id: str | None = None,
                            after: str | None = None, size: int = 100) -> list[dict[str, Any]]:
    conditions = [column == value for column, value in ((NOTES.c.invoice_id, invoice_id),
                                                        (NOTES.c.consumer_id, consumer_id)) if value is not None]
    if after is not None:
        conditions.append(NOTES.c.id > after)
    statement = select(NOTES).order_by(NOTES.c.id).limit(size)
    if conditions:
        statement = statement.where(and_(*conditions))
    return [dict(row) for row in (await conn.execute(statement)).mappings()]
