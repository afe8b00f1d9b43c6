"""Writes to subscriptions: the generic CRUD's validation, then the timeline kept by subscriptions.py.

    create   one subscription per consumer at a time (SubscriptionConflict otherwise); it takes the
             plan's version matching its head (plan_store.ensure_version)
    update   `plan` switches now (sent unchanged, it moves to the plan's latest version),
             `next_plan` schedules a switch at the end of the billing period (null drops it);
             `external_customer_id` and tags change freely; consumer, started_at and tz never do,
             and the fields Tollway sets may only be sent back as they are
    cancel   now, or at the end of the billing period
    delete   only a subscription that is not active (ended, or not started)

Every write runs in one Catalog.write() transaction, so checks and the write see no interleaving.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.billing import plan_store, tables
from tollway.billing.daos import SUBSCRIPTIONS
from tollway.billing.errors import SubscriptionConflict
from tollway.billing.subscriptions import Timeline, TimelineError
from tollway.errors import ForeignKeyViolation, SchemaViolation
from tollway.store.entities.catalog import Catalog
from tollway.store.entities.crud import Parent
from tollway.store.entities.dao import Dao
from tollway.store.entities.validation import is_uuid

SERVER_SET = ("plan_version", "ends_at", "next_plan_version", "next_plan_at", "phases")
FIXED = ("consumer", "started_at", "tz")
NAME = "subscriptions"
_DAO = Dao(SUBSCRIPTIONS)


def timeline_of(entity: Mapping[str, Any]) -> Timeline:
    return Timeline.from_json(int(entity["started_at"]), entity.get("ends_at"), ZoneInfo(entity["tz"]),
                              entity.get("phases") or [])


def with_timeline(entity: Mapping[str, Any], timeline: Timeline, now: int) -> dict[str, Any]:
    """The entity's fields Tollway sets, as the timeline says at `now`."""
    current, following = timeline.current(now), timeline.next_phase(now)
    return {**entity, "started_at": timeline.started_at, "plan": {"id": current.plan_id},
            "plan_version": current.version,
            "ends_at": timeline.ends_at, "phases": [phase.to_json() for phase in timeline.phases],
            "next_plan": None if following is None else {"id": following.plan_id},
            "next_plan_version": None if following is None else following.version,
            "next_plan_at": None if following is None else following.starts_at}


async def consumer_subscriptions(conn: AsyncConnection, consumer_id: str) -> list[dict[str, Any]]:
    """Every subscription of a consumer, oldest start first."""
    t = tables.subscriptions
    rows = await conn.execute(select(t).where(t.c.consumer_id == consumer_id).order_by(t.c.started_at, t.c.id))
    return [_DAO.to_entity(row) for row in rows.mappings()]


@contextmanager
def _timeline_problems() -> Iterator[None]:
    """A change the timeline refuses is a problem of the whole entity (400)."""
    try:
        yield
    except TimelineError as exc:
        raise SchemaViolation({"@entity": [str(exc)]}) from None


def _build(catalog: Catalog, data: dict[str, Any], form: bool, old: Mapping[str, Any] | None,
           problems: dict[str, Any]) -> dict[str, Any]:
    """Crud.build's validation, with `problems` found before it reported in the same answer."""
    try:
        entity = catalog.crud(NAME).build(data, form=form, old=old, merge=old is not None)
    except SchemaViolation as exc:
        raise SchemaViolation({**exc.fields, **problems}) from None
    if problems:
        raise SchemaViolation(problems)
    return entity


async def _version_of(conn: AsyncConnection, field: str, ref: Mapping[str, Any], now: int) -> plan_store.StoredVersion:
    plan = await plan_store.find_plan(conn, ref["id"])
    if plan is None:
        raise ForeignKeyViolation(field, dict(ref))
    version, _ = await plan_store.ensure_version(conn, plan, now)
    return version


async def _check_alone(conn: AsyncConnection, entity: Mapping[str, Any]) -> None:
    """No other subscription of the consumer runs at or after this one's start."""
    for other in await consumer_subscriptions(conn, entity["consumer"]["id"]):
        if other["id"] != entity["id"] and (other.get("ends_at") is None or other["ends_at"] > entity["started_at"]):
            raise SubscriptionConflict(other["id"])


async def create(catalog: Catalog, data: dict[str, Any], *, form: bool, parent: Parent | None = None,
                 now: int | None = None) -> dict[str, Any]:
    now = int(time.time()) if now is None else now
    if parent is not None:
        data["consumer"] = {"id": parent.id}
    crud = catalog.crud(NAME)
    await crud.resolve_references(data)
    problems = {name: "is set by Tollway" for name in SERVER_SET if data.get(name) is not None}
    if data.get("next_plan") is not None:
        problems["next_plan"] = "schedule a change once the subscription exists (PATCH)"
    if data.get("started_at") in (None, ""):
        data["started_at"] = now
    entity = _build(catalog, data, form, None, problems)
    async with catalog.write() as conn:
        await crud.dao.check_foreign(conn, {**entity, "plan": None, "next_plan": None})
        version = await _version_of(conn, "plan", entity["plan"], now)
        timeline = Timeline.start(entity["started_at"], ZoneInfo(entity["tz"]), version.plan_id, version.number,
                                  version.version)
        entity = with_timeline(entity, timeline, now)
        await _check_alone(conn, entity)
        await crud.dao.insert(conn, entity)
    return entity


async def update(catalog: Catalog, ident: str, data: dict[str, Any], *, form: bool, parent: Parent | None = None,
                 now: int | None = None) -> dict[str, Any]:
    now = int(time.time()) if now is None else now
    crud = catalog.crud(NAME)
    old = await crud.read(ident, parent)
    await crud.resolve_references(data)
    entity = _build(catalog, dict(data), form, old, {})
    problems: dict[str, Any] = {}
    for name in FIXED:
        if entity.get(name) != old.get(name):
            problems[name] = "cannot be changed: cancel this subscription and create another"
    for name in SERVER_SET:
        if entity.get(name) != old.get(name):
            problems[name] = "is set by Tollway"
    if problems:
        raise SchemaViolation(problems)
    async with catalog.write() as conn:
        timeline = timeline_of(old)
        if "plan" in data:
            version = await _version_of(conn, "plan", entity["plan"], now)
            current = timeline.current(now)
            if (current.plan_id, current.version) != (version.plan_id, version.number):
                with _timeline_problems():
                    timeline = timeline.switch(now, version.plan_id, version.number, version.version)
        if "next_plan" in data:
            if entity.get("next_plan") is None:
                timeline = timeline.unschedule(now)
            else:
                version = await _version_of(conn, "next_plan", entity["next_plan"], now)
                with _timeline_problems():
                    timeline = timeline.schedule(now, version.plan_id, version.number, version.version)
        entity = with_timeline(entity, timeline, now)
        await crud.dao.update(conn, entity)
    return entity


async def upsert(catalog: Catalog, ident: str, data: dict[str, Any], *, form: bool, parent: Parent | None = None,
                 now: int | None = None) -> tuple[dict[str, Any], bool]:
    """PUT: update the subscription `ident` names, or create it with that id; (entity, created)."""
    if await catalog.crud(NAME).find(ident, parent) is not None:
        return await update(catalog, ident, data, form=form, parent=parent, now=now), False
    if not is_uuid(ident):
        raise SchemaViolation({"id": "expected a valid UUID: a subscription is named by its id"})
    return await create(catalog, {**data, "id": ident}, form=form, parent=parent, now=now), True


async def cancel(catalog: Catalog, ident: str, at_period_end: bool, *, parent: Parent | None = None,
                 now: int | None = None) -> dict[str, Any]:
    now = int(time.time()) if now is None else now
    crud = catalog.crud(NAME)
    old = await crud.read(ident, parent)
    with _timeline_problems():
        timeline = timeline_of(old).cancel(now, at_period_end)
    async with catalog.write() as conn:
        entity = with_timeline({**old, "updated_at": now}, timeline, now)
        await crud.dao.update(conn, entity)
    return entity


async def delete(catalog: Catalog, ident: str, *, parent: Parent | None = None, now: int | None = None) -> None:
    """Delete a subscription that is not active; SchemaViolation for an active one (cancel it first)."""
    now = int(time.time()) if now is None else now
    crud = catalog.crud(NAME)
    old = await crud.find(ident, parent)
    if old is None:
        return
    if timeline_of(old).active_at(now):
        raise SchemaViolation({"@entity": ["the subscription is active: cancel it first (POST .../cancel)"]})
    async with catalog.write() as conn:
        await crud.dao.delete(conn, old["id"])
