"""Invoices, their lines, credit notes and the per-prefix number sequence.

Spelled out here rather than taken from tables.py: a migration is frozen in time. The unique
(subscription_id, period_start) is what keeps concurrent billing runs from billing a period twice.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.engine import Connection

ID, PRICE = 36, 64


def _money(name: str) -> list[Column]:  # type: ignore[type-arg]
    return [Column(name, String(PRICE), nullable=False), Column(f"{name}_minor", BigInteger, nullable=False)]


def up(conn: Connection) -> None:
    meta = MetaData()
    for name in ("consumers", "subscriptions"):  # referenced here, not created
        Table(name, meta, Column("id", String(ID), primary_key=True))
    created = [
        Table("invoices", meta,
              Column("id", String(ID), primary_key=True),
              Column("created_at", BigInteger, nullable=False),
              Column("updated_at", BigInteger, nullable=False),
              Column("subscription_id", String(ID), ForeignKey("subscriptions.id"), nullable=False),
              Column("consumer_id", String(ID), ForeignKey("consumers.id"), nullable=False, index=True),
              Column("period", String(7), nullable=False, index=True),
              Column("period_start", BigInteger, nullable=False),
              Column("period_end", BigInteger, nullable=False),
              Column("tz", String(64), nullable=False),
              Column("currency", String(3), nullable=False),
              Column("status", String(16), nullable=False, index=True),
              Column("number", String(64), unique=True),
              Column("issued_at", BigInteger),
              Column("due_at", BigInteger),
              Column("voided_at", BigInteger),
              *_money("subtotal"), *_money("credits"), *_money("total"),
              Column("customer", Text, nullable=False),
              UniqueConstraint("subscription_id", "period_start", name="invoices_subscription_period_key")),
        Table("invoice_lines", meta,
              Column("id", String(ID), primary_key=True),
              Column("invoice_id", String(ID), ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False,
                     index=True),
              Column("position", Integer, nullable=False),
              Column("kind", String(32), nullable=False),
              Column("plan_id", String(ID)),
              Column("plan_name", String(255)),
              Column("plan_version", Integer),
              Column("meter", String(255)),
              Column("model", String(16)),
              Column("starts_at", BigInteger, nullable=False),
              Column("ends_at", BigInteger, nullable=False),
              Column("quantity", String(PRICE)),
              Column("unit_price", String(PRICE)),
              Column("tiers", Text),
              Column("proration", Text),
              Column("credit_note_id", String(ID)),
              *_money("amount")),
        Table("credit_notes", meta,
              Column("id", String(ID), primary_key=True),
              Column("created_at", BigInteger, nullable=False),
              Column("updated_at", BigInteger, nullable=False),
              Column("invoice_id", String(ID), ForeignKey("invoices.id"), nullable=False, index=True),
              Column("consumer_id", String(ID), ForeignKey("consumers.id"), nullable=False, index=True),
              Column("currency", String(3), nullable=False),
              Column("reason", String(32), nullable=False),
              Column("description", Text),
              *_money("amount"),
              Column("applied_minor", BigInteger, nullable=False)),
        Table("invoice_sequences", meta,
              Column("prefix", String(64), primary_key=True),
              Column("last_number", BigInteger, nullable=False)),
    ]
    meta.create_all(conn, tables=created)
