"""billing_windows, pure: a subscription's periods as invoices bill them, cut where it starts, ends, or
changes to a plan with another cycle (the period ends at the change and a new one starts there)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tollway.billing.invoicing import billing_windows
from tollway.billing.plans import parse_plan
from tollway.billing.subscriptions import Timeline
from tollway.billing.versions import PlanVersion

UTC, NEW_YORK = ZoneInfo("UTC"), ZoneInfo("America/New_York")


def at(tz: ZoneInfo, *fields: int) -> int:
    return int(datetime(*fields, tzinfo=tz).timestamp())


def version(name: str, interval: str, anchor: str = "calendar") -> PlanVersion:
    return PlanVersion(name, parse_plan({"currency": "USD", "interval": interval, "billing_anchor": anchor}), {}, ())


def spans(timeline: Timeline, until: int) -> list[tuple[int, int, int]]:
    return [(w.starts_at, w.ends_at, w.period.days) for w in billing_windows(timeline, timeline.started_at, until)]


def test_calendar_months_in_the_zone_from_a_mid_month_start() -> None:
    timeline = Timeline.start(at(NEW_YORK, 2027, 1, 15, 9), NEW_YORK, "p", 1, version("m", "month"))
    assert spans(timeline, at(NEW_YORK, 2027, 3, 1)) == [
        (at(NEW_YORK, 2027, 1, 15, 9), at(NEW_YORK, 2027, 2, 1), 31),
        (at(NEW_YORK, 2027, 2, 1), at(NEW_YORK, 2027, 3, 1), 28)]
    assert spans(timeline, at(NEW_YORK, 2027, 3, 1) - 1)[-1][1] == at(NEW_YORK, 2027, 2, 1)  # not ended yet


def test_a_change_to_another_interval_ends_the_period_at_the_change() -> None:
    timeline = Timeline.start(at(UTC, 2027, 3, 1), UTC, "monthly", 1, version("m", "month"))
    timeline = timeline.switch(at(UTC, 2027, 3, 10, 12), "weekly", 1, version("w", "week", "anniversary"))
    assert spans(timeline, at(UTC, 2027, 3, 25)) == [
        (at(UTC, 2027, 3, 1), at(UTC, 2027, 3, 10, 12), 31),        # March, cut at the change
        (at(UTC, 2027, 3, 10, 12), at(UTC, 2027, 3, 17), 7),        # weeks anchored on the change's day
        (at(UTC, 2027, 3, 17), at(UTC, 2027, 3, 24), 7)]


def test_a_change_within_the_cycle_keeps_one_period_and_a_cancel_ends_the_last() -> None:
    timeline = Timeline.start(at(UTC, 2027, 3, 1), UTC, "basic", 1, version("b", "month"))
    timeline = timeline.switch(at(UTC, 2027, 3, 10), "pro", 1, version("p", "month"))
    timeline = timeline.cancel(at(UTC, 2027, 4, 20, 8), at_period_end=False)
    assert spans(timeline, at(UTC, 2028, 1, 1)) == [
        (at(UTC, 2027, 3, 1), at(UTC, 2027, 4, 1), 31),
        (at(UTC, 2027, 4, 1), at(UTC, 2027, 4, 20, 8, 1), 30)]
