"""Usage answers read from the database: a consumer's (GET /consumers/{c}/usage) or everyone's.

Versions are read once per call however many subscriptions share them, and the ledger once per
group of subscriptions whose figures share spans (ledger_usage.read_many).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.billing import plan_store, tables
from tollway.billing.daos import SUBSCRIPTIONS
from tollway.billing.ledger_usage import read_many
from tollway.billing.subscription_writes import consumer_subscriptions, timeline_of
from tollway.billing.usage import Reading, reading
from tollway.billing.versions import PlanVersion
from tollway.config import Settings
from tollway.store.entities.dao import Dao

_DAO = Dao(SUBSCRIPTIONS)


class _Versions:
    """Plan versions read at most once each."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.found: dict[tuple[str, int], PlanVersion] = {}

    async def get(self, plan_id: str, number: int) -> PlanVersion:
        key = (plan_id, number)
        if key not in self.found:
            stored = await plan_store.read_version(self.conn, plan_id, number)
            if stored is None:  # a phase names a version that was recorded before it: never missing
                raise LookupError(f"plan {plan_id} has no version {number}")
            self.found[key] = stored.version
        return self.found[key]


async def _readings(conn: AsyncConnection, subscriptions: Iterable[dict[str, Any]], now: int) -> list[Reading]:
    versions = _Versions(conn)
    found = []
    for subscription in subscriptions:
        timeline = timeline_of(subscription)
        phase = timeline.phase_at(now)
        if phase is not None:
            found.append(reading(subscription, timeline, phase, await versions.get(phase.plan_id, phase.version), now))
    return found


async def active_reading(conn: AsyncConnection, consumer_id: str, now: int) -> Reading | None:
    """The reading of the consumer's subscription active at `now`, or None when it has none."""
    found = await _readings(conn, await consumer_subscriptions(conn, consumer_id), now)
    return found[0] if found else None


async def all_readings(conn: AsyncConnection, now: int) -> list[Reading]:
    """The readings of every subscription active at `now`."""
    t = tables.subscriptions
    rows = await conn.execute(select(t).where(t.c.started_at <= now, or_(t.c.ends_at.is_(None), t.c.ends_at > now))
                              .order_by(t.c.id))
    return await _readings(conn, [_DAO.to_entity(row) for row in rows.mappings()], now)


async def answers(conn: AsyncConnection, settings: Settings, readings: list[Reading], now: int) -> list[dict[str, Any]]:
    """The usage answer of each reading, in order (RetentionExceeded if the ledger no longer holds it)."""
    wanted = [(item.subscription["consumer"]["id"], item.figures) for item in readings]
    figures = await read_many(conn, settings, wanted, now)
    return [item.answer(figures[item.subscription["consumer"]["id"]]) for item in readings]
