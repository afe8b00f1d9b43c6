"""Billing's tables as SQLAlchemy Core objects (its migrations create them; see migrations/).

They share the store's MetaData, so their foreign keys resolve to services, routes and consumers.
Prices are decimal strings as given (exact; at most 12 decimals), lists and records JSON text,
times integer epoch seconds, ids UUID strings, as in the core tables.

  meters          what is counted: an aggregation of the ledger, filtered by service, route, status
  plans           the editable head of each plan: currency, cycle, base fee, trial, commitment
  charges         a plan's price for one meter (unique per plan and meter)
  entitlements    a plan's limit on one meter per period (unique per plan, meter and period)
  plan_versions   immutable snapshots of a plan as subscriptions took it (numbered from 1)
  subscriptions   a consumer on a plan version, in a time zone, with its phases (history)
  invoices        one per subscription and billing period (unique): draft, finalized or void
  invoice_lines   an invoice's lines, each rounded once; tiers and proration as JSON
  credit_notes    corrections of finalized invoices, deducted on the consumer's next invoices
  invoice_sequences  the last number taken per invoice prefix (gapless: taken when finalizing)
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint

from tollway.store.tables import metadata

ID = 36
PRICE = 64  # a price as text: 18 integer digits, a point, 12 decimals, with room to spare


def _id() -> Column[str]:
    return Column("id", String(ID), primary_key=True)


def _times() -> list[Column[int]]:
    return [Column("created_at", BigInteger, nullable=False), Column("updated_at", BigInteger, nullable=False)]


meters = Table(
    "meters", metadata, _id(), *_times(),
    Column("name", String(255), nullable=False, unique=True),
    Column("aggregation", String(8), nullable=False),
    Column("field", String(32)),
    Column("service_id", String(ID), ForeignKey("services.id"), index=True),
    Column("route_id", String(ID), ForeignKey("routes.id"), index=True),
    Column("status", Text),
    Column("tags", Text),
)

plans = Table(
    "plans", metadata, _id(), *_times(),
    Column("name", String(255), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("billing_anchor", String(16), nullable=False),
    Column("base_fee", String(PRICE), nullable=False),
    Column("trial_days", Integer, nullable=False),
    Column("minimum_commitment", String(PRICE)),
    Column("tags", Text),
)

charges = Table(
    "charges", metadata, _id(), *_times(),
    Column("plan_id", String(ID), ForeignKey("plans.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("meter_id", String(ID), ForeignKey("meters.id"), nullable=False, index=True),
    Column("model", String(16), nullable=False),
    Column("unit_price", String(PRICE)),
    Column("free_units", BigInteger),
    Column("tiers", Text),
    Column("package_size", BigInteger),
    Column("package_price", String(PRICE)),
    Column("cache_key", String(255), nullable=False, unique=True),  # charges:plan:meter
    Column("tags", Text),
)

entitlements = Table(
    "entitlements", metadata, _id(), *_times(),
    Column("plan_id", String(ID), ForeignKey("plans.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("meter_id", String(ID), ForeignKey("meters.id"), nullable=False, index=True),
    Column("limit", BigInteger, nullable=False),
    Column("period", String(16), nullable=False),
    Column("enforcement", String(8), nullable=False),
    Column("cache_key", String(255), nullable=False, unique=True),  # entitlements:plan:meter:period
    Column("tags", Text),
)

plan_versions = Table(
    "plan_versions", metadata, _id(),
    Column("created_at", BigInteger, nullable=False),
    Column("plan_id", String(ID), ForeignKey("plans.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    UniqueConstraint("plan_id", "version", name="plan_versions_plan_version_key"),
)

subscriptions = Table(
    "subscriptions", metadata, _id(), *_times(),
    Column("consumer_id", String(ID), ForeignKey("consumers.id"), nullable=False, index=True),
    Column("plan_id", String(ID), ForeignKey("plans.id"), nullable=False, index=True),
    Column("plan_version", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger),
    Column("tz", String(64), nullable=False),
    Column("external_customer_id", String(255)),
    Column("next_plan_id", String(ID), ForeignKey("plans.id"), index=True),
    Column("next_plan_version", Integer),
    Column("next_plan_at", BigInteger),
    Column("phases", Text, nullable=False),
    Column("tags", Text),
)

invoices = Table(
    "invoices", metadata, _id(), *_times(),
    Column("subscription_id", String(ID), ForeignKey("subscriptions.id"), nullable=False),
    Column("consumer_id", String(ID), ForeignKey("consumers.id"), nullable=False, index=True),
    Column("period", String(7), nullable=False, index=True),   # YYYY-MM of the local period start
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("tz", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("number", String(64), unique=True),
    Column("issued_at", BigInteger),
    Column("due_at", BigInteger),
    Column("voided_at", BigInteger),
    Column("subtotal", String(PRICE), nullable=False),
    Column("subtotal_minor", BigInteger, nullable=False),
    Column("credits", String(PRICE), nullable=False),
    Column("credits_minor", BigInteger, nullable=False),
    Column("total", String(PRICE), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("customer", Text, nullable=False),   # consumer username, custom_id, external customer id (JSON)
    UniqueConstraint("subscription_id", "period_start", name="invoices_subscription_period_key"),
)

invoice_lines = Table(
    "invoice_lines", metadata, _id(),
    Column("invoice_id", String(ID), ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False, index=True),
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
    Column("amount", String(PRICE), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
)

credit_notes = Table(
    "credit_notes", metadata, _id(), *_times(),
    Column("invoice_id", String(ID), ForeignKey("invoices.id"), nullable=False, index=True),
    Column("consumer_id", String(ID), ForeignKey("consumers.id"), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("description", Text),
    Column("amount", String(PRICE), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("applied_minor", BigInteger, nullable=False),   # deducted on later finalized invoices so far
)

invoice_sequences = Table(
    "invoice_sequences", metadata,
    Column("prefix", String(64), primary_key=True),
    Column("last_number", BigInteger, nullable=False),
)

BILLING_TABLES = [meters, plans, charges, entitlements, plan_versions, subscriptions, invoices, invoice_lines,
                  credit_notes, invoice_sequences]
