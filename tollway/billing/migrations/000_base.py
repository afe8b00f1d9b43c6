"""Billing's tables: meters, plans, charges, entitlements, plan versions and subscriptions.

Spelled out here rather than taken from tables.py: a migration is frozen in time. Deleting a
service, route or consumer that a meter or subscription references is refused (no cascade):
usage already priced must keep its meter and its customer. A plan's charges and entitlements go
with it; a plan that has versions (it was subscribed to) cannot be deleted.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.engine import Connection

ID, PRICE = 36, 64


def _referenced(meta: MetaData) -> None:
    for name in ("services", "routes", "consumers"):  # the core's, referenced here, not created
        Table(name, meta, Column("id", String(ID), primary_key=True))


def _entity(meta: MetaData, name: str, *columns: Column) -> Table:  # type: ignore[type-arg]
    return Table(name, meta, Column("id", String(ID), primary_key=True),
                 Column("created_at", BigInteger, nullable=False),
                 Column("updated_at", BigInteger, nullable=False),
                 *columns, Column("tags", Text))


def up(conn: Connection) -> None:
    meta = MetaData()
    _referenced(meta)
    created = [
        _entity(meta, "meters",
                Column("name", String(255), nullable=False, unique=True),
                Column("aggregation", String(8), nullable=False),
                Column("field", String(32)),
                Column("service_id", String(ID), ForeignKey("services.id"), index=True),
                Column("route_id", String(ID), ForeignKey("routes.id"), index=True),
                Column("status", Text)),
        _entity(meta, "plans",
                Column("name", String(255), nullable=False, unique=True),
                Column("currency", String(3), nullable=False),
                Column("interval", String(8), nullable=False),
                Column("billing_anchor", String(16), nullable=False),
                Column("base_fee", String(PRICE), nullable=False),
                Column("trial_days", Integer, nullable=False),
                Column("minimum_commitment", String(PRICE))),
        _entity(meta, "charges",
                Column("plan_id", String(ID), ForeignKey("plans.id", ondelete="CASCADE"), nullable=False, index=True),
                Column("meter_id", String(ID), ForeignKey("meters.id"), nullable=False, index=True),
                Column("model", String(16), nullable=False),
                Column("unit_price", String(PRICE)),
                Column("free_units", BigInteger),
                Column("tiers", Text),
                Column("package_size", BigInteger),
                Column("package_price", String(PRICE)),
                Column("cache_key", String(255), nullable=False, unique=True)),
        _entity(meta, "entitlements",
                Column("plan_id", String(ID), ForeignKey("plans.id", ondelete="CASCADE"), nullable=False, index=True),
                Column("meter_id", String(ID), ForeignKey("meters.id"), nullable=False, index=True),
                Column("limit", BigInteger, nullable=False),
                Column("period", String(16), nullable=False),
                Column("enforcement", String(8), nullable=False),
                Column("cache_key", String(255), nullable=False, unique=True)),
        Table("plan_versions", meta,
              Column("id", String(ID), primary_key=True),
              Column("created_at", BigInteger, nullable=False),
              Column("plan_id", String(ID), ForeignKey("plans.id"), nullable=False),
              Column("version", Integer, nullable=False),
              Column("definition", Text, nullable=False),
              UniqueConstraint("plan_id", "version", name="plan_versions_plan_version_key")),
        _entity(meta, "subscriptions",
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
                Column("phases", Text, nullable=False)),
    ]
    meta.create_all(conn, tables=created)
