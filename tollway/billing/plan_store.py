"""Plans in the database: a plan's head read as one definition, and its immutable versions.

`ensure_version` is how a subscription gets a version: inside the caller's write transaction it
reads the head, and returns the latest version when the head is the same (canonical JSON), else
records the next one. Writes to one database are serialised by Catalog.write()'s version bump, so
two subscriptions taken at once cannot record the same version twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.billing import tables
from tollway.billing.daos import CHARGES, ENTITLEMENTS, METERS, PLANS
from tollway.billing.versions import PlanVersion, head_version
from tollway.errors import NotFound
from tollway.store.entities.dao import Dao
from tollway.store.entities.validation import is_uuid

_PLANS, _CHARGES, _ENTITLEMENTS, _METERS = Dao(PLANS), Dao(CHARGES), Dao(ENTITLEMENTS), Dao(METERS)


@dataclass(frozen=True)
class StoredVersion:
    """A recorded version: its number, when it was recorded, and the definition."""

    plan_id: str
    number: int
    created_at: int
    version: PlanVersion

    def to_json(self) -> dict[str, Any]:
        return {"plan": {"id": self.plan_id, "name": self.version.name}, "version": self.number,
                "created_at": self.created_at, "definition": self.version.to_json()}


async def find_plan(conn: AsyncConnection, ident: str) -> dict[str, Any] | None:
    """A plan entity by id or name."""
    return await _PLANS.get(conn, ident)


async def read_plan(conn: AsyncConnection, ident: str) -> dict[str, Any]:
    plan = await find_plan(conn, ident)
    if plan is None:
        raise NotFound("plans")
    return plan


async def read_head(conn: AsyncConnection, plan: Mapping[str, Any]) -> PlanVersion:
    """The version the plan's head describes now (not recorded)."""
    charges = await _children(conn, _CHARGES, tables.charges, plan["id"])
    entitlements = await _children(conn, _ENTITLEMENTS, tables.entitlements, plan["id"])
    meter_ids = {item["meter"]["id"] for item in (*charges, *entitlements)}
    meters: dict[str, dict[str, Any]] = {}
    if meter_ids:
        rows = await conn.execute(select(tables.meters).where(tables.meters.c.id.in_(sorted(meter_ids))))
        meters = {row["id"]: _METERS.to_entity(row) for row in rows.mappings()}
    return head_version(plan, charges, entitlements, meters)


async def _children(conn: AsyncConnection, dao: Dao, table: Any, plan_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(select(table).where(table.c.plan_id == plan_id).order_by(table.c.id))
    return [dao.to_entity(row) for row in rows.mappings()]


def _stored(row: Mapping[Any, Any]) -> StoredVersion:
    return StoredVersion(row["plan_id"], int(row["version"]), int(row["created_at"]),
                         PlanVersion.from_json(orjson.loads(row["definition"])))


async def latest_version(conn: AsyncConnection, plan_id: str) -> StoredVersion | None:
    pv = tables.plan_versions
    row = (await conn.execute(select(pv).where(pv.c.plan_id == plan_id).order_by(pv.c.version.desc()).limit(1))
           ).mappings().first()
    return None if row is None else _stored(row)


async def read_version(conn: AsyncConnection, plan_id: str, number: int) -> StoredVersion | None:
    pv = tables.plan_versions
    row = (await conn.execute(select(pv).where(pv.c.plan_id == plan_id, pv.c.version == number))).mappings().first()
    return None if row is None else _stored(row)


async def list_versions(conn: AsyncConnection, plan_id: str) -> list[StoredVersion]:
    pv = tables.plan_versions
    rows = await conn.execute(select(pv).where(pv.c.plan_id == plan_id).order_by(pv.c.version))
    return [_stored(row) for row in rows.mappings()]


async def ensure_version(conn: AsyncConnection, plan: Mapping[str, Any],
                         now: int | None = None) -> tuple[StoredVersion, bool]:
    """The version matching the plan's head, recorded if it is new; and whether it was."""
    head = await read_head(conn, plan)
    latest = await latest_version(conn, plan["id"])
    if latest is not None and latest.version.canonical() == head.canonical():
        return latest, False
    pv = tables.plan_versions
    number = int(await conn.scalar(select(func.coalesce(func.max(pv.c.version), 0)).where(
        pv.c.plan_id == plan["id"])) or 0) + 1
    created_at = int(time.time()) if now is None else now
    await conn.execute(pv.insert().values(id=str(uuid.uuid4()), created_at=created_at, plan_id=plan["id"],
                                          version=number, definition=orjson.dumps(head.to_json()).decode()))
    return StoredVersion(plan["id"], number, created_at, head), True


def parse_version_number(text: str) -> int | None:
    """A version number from a path segment ("3"), or None when it is not one."""
    if text.isdigit() and len(text) <= 9 and not is_uuid(text):
        return int(text)
    return None
