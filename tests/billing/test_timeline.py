"""A subscription's timeline: phases of plan versions, changed now or at the period's end, cancelled,
in whole minutes, with the history of begun phases never rewritten."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tollway.billing.subscriptions import Timeline, TimelineError
from tollway.billing.versions import PlanVersion

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=BERLIN).timestamp())


def version(name: str, interval: str = "month", anchor: str = "calendar", limit: int = 100) -> PlanVersion:
    return PlanVersion.from_json({
        "name": name, "currency": "EUR", "interval": interval, "billing_anchor": anchor, "base_fee": "10",
        "trial_days": 0, "minimum_commitment": None, "charges": {},
        "meters": {"calls": {"name": "calls", "aggregation": "count", "field": None, "service": None,
                             "route": None, "status": None}},
        "entitlements": [{"meter": "calls", "limit": limit, "period": "day", "enforcement": "hard"}]})


BASIC, PRO, YEARLY = version("basic"), version("pro", limit=1000), version("yearly", interval="year")


def spans(timeline: Timeline) -> list[tuple[str, int, int, int | None]]:
    return [(p.plan_name, p.version, p.starts_at, p.ends_at) for p in timeline.phases]


def started() -> Timeline:
    return Timeline.start(at(2027, 1, 10, 9, 30, 45), BERLIN, "basic-id", 1, BASIC)


def test_a_subscription_starts_at_the_start_of_its_minute():
    timeline = started()
    assert timeline.started_at == at(2027, 1, 10, 9, 30)
    assert spans(timeline) == [("basic", 1, at(2027, 1, 10, 9, 30), None)]
    assert timeline.phase_at(at(2027, 1, 10, 9, 29, 59)) is None
    assert timeline.phase_at(at(2027, 1, 10, 9, 30)) is timeline.phases[0]


def test_a_change_now_takes_the_current_minute_and_keeps_the_history():
    timeline = started().switch(at(2027, 1, 20, 15, 0, 59), "pro-id", 1, PRO)
    assert spans(timeline) == [("basic", 1, at(2027, 1, 10, 9, 30), at(2027, 1, 20, 15)),
                               ("pro", 1, at(2027, 1, 20, 15), None)]
    assert timeline.phase_at(at(2027, 1, 20, 14, 59, 59)).plan_name == "basic"
    assert timeline.phase_at(at(2027, 1, 20, 15, 0, 1)).plan_name == "pro"
    assert timeline.phases[1].entitlements[0].limit == 1000


def test_a_change_before_the_start_replaces_the_plan():
    timeline = Timeline.start(at(2027, 2, 1), BERLIN, "basic-id", 1, BASIC).switch(at(2027, 1, 20), "pro-id", 2, PRO)
    assert spans(timeline) == [("pro", 2, at(2027, 2, 1), None)]


def test_a_change_at_the_period_end_starts_at_the_next_local_month_and_keeps_the_anchor():
    timeline = started().schedule(at(2027, 1, 20, 15), "pro-id", 1, PRO)
    assert spans(timeline) == [("basic", 1, at(2027, 1, 10, 9, 30), at(2027, 2, 1)),
                               ("pro", 1, at(2027, 2, 1), None)]
    assert timeline.next_phase(at(2027, 1, 20, 15)).plan_name == "pro"
    assert timeline.phases[1].anchored_at == timeline.started_at
    # a later schedule replaces it; dropping it leaves the first phase open again
    again = timeline.schedule(at(2027, 1, 25), "yearly-id", 1, YEARLY)
    assert spans(again)[1:] == [("yearly", 1, at(2027, 2, 1), None)]
    assert spans(timeline.unschedule(at(2027, 1, 25))) == [("basic", 1, at(2027, 1, 10, 9, 30), None)]


def test_a_change_of_interval_reanchors_the_cycle_at_the_change():
    timeline = started().switch(at(2027, 1, 20, 15), "yearly-id", 1, YEARLY)
    yearly = timeline.phases[1]
    assert yearly.anchored_at == at(2027, 1, 20, 15)
    assert timeline.period(at(2027, 6, 1)).start_day.isoformat() == "2027-01-01"  # calendar years anyway


def test_a_cancel_now_ends_with_the_current_minute_and_drops_scheduled_changes():
    timeline = started().schedule(at(2027, 1, 20), "pro-id", 1, PRO).cancel(at(2027, 1, 25, 8, 0, 10), False)
    assert timeline.ends_at == at(2027, 1, 25, 8, 1)
    assert spans(timeline) == [("basic", 1, at(2027, 1, 10, 9, 30), at(2027, 1, 25, 8, 1))]
    assert timeline.active_at(at(2027, 1, 25, 8, 0, 59)) and not timeline.active_at(at(2027, 1, 25, 8, 1))


def test_a_cancel_at_the_period_end_ends_at_local_midnight_and_nothing_changes_after_the_end():
    timeline = started().cancel(at(2027, 1, 25), True)
    assert timeline.ends_at == at(2027, 2, 1)
    with pytest.raises(TimelineError, match="ends before"):
        timeline.schedule(at(2027, 1, 26), "pro-id", 1, PRO)
    with pytest.raises(TimelineError, match="has ended"):
        timeline.switch(at(2027, 2, 1), "pro-id", 1, PRO)


def test_a_subscription_cancelled_before_it_started_never_runs():
    timeline = Timeline.start(at(2027, 2, 1), BERLIN, "basic-id", 1, BASIC).cancel(at(2027, 1, 20), False)
    assert timeline.ends_at == timeline.started_at == at(2027, 2, 1)
    assert timeline.phase_at(at(2027, 2, 1)) is None


def test_phases_round_trip_through_json():
    timeline = started().schedule(at(2027, 1, 20), "pro-id", 1, PRO)
    again = Timeline.from_json(timeline.started_at, timeline.ends_at, BERLIN,
                               [phase.to_json() for phase in timeline.phases])
    assert again == timeline
    assert timeline.phases[0].to_json()["entitlements"] == [
        {"meter": {"name": "calls", "aggregation": "count", "field": None, "service": None, "route": None,
                   "status": None}, "limit": 100, "period": "day", "enforcement": "hard"}]
