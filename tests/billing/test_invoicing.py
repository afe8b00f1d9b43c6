"""billing_windows, pure: a subscription's periods as invoices bill them, cut where it starts, ends, or
changes to a plan with another cycle (the period ends at the change and a new one starts there);
issues and their base fees in advance, corrections by local days."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from tollway.billing.advance_fees import FeeSpan, corrections, fee_line
from tollway.billing.invoicing import Bill, Issue, billing_windows, issues, segments
from tollway.billing.periods import BillingPeriod
from tollway.billing.plans import parse_plan
from tollway.billing.subscriptions import Phase, Timeline
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


def fee_version(name: str, fee: str) -> PlanVersion:
    return PlanVersion(name, parse_plan({"currency": "USD", "interval": "month", "base_fee": fee}), {}, ())


def bill_of(timeline: Timeline, issue: Issue, billed: tuple[FeeSpan, ...] = ()) -> Bill:
    def version_of(phase: Phase) -> PlanVersion:
        return fee_version(phase.plan_id, {"basic": "30", "pro": "60"}[phase.plan_id])

    return Bill({}, timeline, issue, segments(timeline, issue.arrears, version_of),
                segments(timeline, issue.advance, version_of), billed)


def fee_lines(bill: Bill) -> list[tuple[str, str | None, str | None, str]]:
    lines, _totals = bill.lines([])
    return [(line.kind, line.plan_name, line.quantity, format(line.amount, "f")) for line in lines]


def test_the_fee_in_advance_is_split_by_a_scheduled_change_and_cut_by_a_scheduled_end() -> None:
    timeline = Timeline.start(at(UTC, 2027, 3, 1), UTC, "basic", 1, fee_version("basic", "30"))
    timeline = timeline.switch(at(UTC, 2027, 4, 15), "pro", 1, fee_version("pro", "60"))
    opening, april, may = list(issues(timeline, at(UTC, 2027, 5, 1)))
    assert (opening.at, opening.arrears, opening.period_end) == (at(UTC, 2027, 3, 1), None, at(UTC, 2027, 4, 1))
    # March on basic, whole: 30.00
    assert fee_lines(bill_of(timeline, opening)) == [("base_fee", "basic", "1", "30.00")]
    # issued Apr 1, the change on Apr 15 already scheduled: basic Apr 1-14, 30 × 14/30 = 14.00;
    # pro Apr 15-30, 60 × 16/30 = 32.00. March was billed whole on basic: nothing to settle.
    first = bill_of(timeline, opening)
    issued = bill_of(timeline, april, first.advance_fees)
    assert fee_lines(issued) == [("base_fee", "basic", "14/30", "14.00"), ("base_fee", "pro", "16/30", "32.00")]
    assert issued.lines([])[1].total_minor == 4600
    # issued May 1: April as billed in advance, May on pro: 60.00
    assert fee_lines(bill_of(timeline, may, issued.advance_fees)) == [("base_fee", "pro", "1", "60.00")]
    ended = timeline.cancel(at(UTC, 2027, 4, 20, 8), at_period_end=False)
    opening, april, last = list(issues(ended, at(UTC, 2028, 1, 1)))
    # ends Apr 20 08:01 (its last minute is billed): Apr 1-19 on basic 30 × 14/30 = 14.00, pro
    # Apr 15-19, 60 × 5/30 = 10.00; the last invoice has the empty period at the end
    assert fee_lines(bill_of(ended, april, bill_of(ended, opening).advance_fees)) == [
        ("base_fee", "basic", "14/30", "14.00"),
        ("base_fee", "pro", "5/30", "10.00")]
    assert (last.at, last.advance, last.period_end) == (at(UTC, 2027, 4, 20, 8, 1), None, at(UTC, 2027, 4, 20, 8, 1))


def test_corrections_give_back_unused_days_and_charge_new_ones_per_version() -> None:
    period = BillingPeriod.of(date(2027, 3, 1), date(2027, 4, 1), UTC)
    billed = [FeeSpan("basic", "basic", 1, Decimal("30"), at(UTC, 2027, 3, 1), at(UTC, 2027, 4, 1))]
    due = [FeeSpan("basic", "basic", 1, Decimal("30"), at(UTC, 2027, 3, 1), at(UTC, 2027, 3, 11, 12)),
           FeeSpan("pro", "pro", 1, Decimal("62"), at(UTC, 2027, 3, 11, 12), at(UTC, 2027, 4, 1))]
    found = corrections(period, billed, due)
    # basic's Mar 11-31 back (the change's day is the new plan's), pro's Mar 11-31 charged
    assert [(span.plan_id, span.sign, span.starts_at, span.ends_at) for span in found] == [
        ("basic", -1, at(UTC, 2027, 3, 11), at(UTC, 2027, 4, 1)), ("pro", 1, at(UTC, 2027, 3, 11), at(UTC, 2027, 4, 1))]
    usd = parse_plan({"currency": "USD"}).currency
    # 30 × 21/31 = 20.3225... -> -20.32; 62 × 21/31 = 42.00
    assert [(line.kind, line.quantity, line.amount) for line in (fee_line(period, span, usd, "base_fee_charge")
                                                                 for span in found)] == [
        ("base_fee_credit", "21/31", Decimal("-20.32")), ("base_fee_charge", "21/31", Decimal("42.00"))]
    assert corrections(period, billed, billed) == []


def test_a_change_to_another_cycle_gives_back_the_old_fee_and_bills_the_new_period_at_the_change() -> None:
    monthly = fee_version("basic", "30")
    weekly = PlanVersion("w", parse_plan({"currency": "USD", "interval": "week", "billing_anchor": "anniversary",
                                          "base_fee": "7"}), {}, ())
    known = {"basic": monthly, "weekly": weekly}

    def bill(timeline: Timeline, issue: Issue, billed: tuple[FeeSpan, ...] = ()) -> Bill:
        return Bill({}, timeline, issue, segments(timeline, issue.arrears, lambda p: known[p.plan_id]),
                    segments(timeline, issue.advance, lambda p: known[p.plan_id]), billed)

    before = Timeline.start(at(UTC, 2027, 3, 1), UTC, "basic", 1, monthly)
    [opening] = issues(before, at(UTC, 2027, 3, 2))
    paid = bill(before, opening)
    assert fee_lines(paid) == [("base_fee", "basic", "1", "30.00")]            # March, whole
    after = before.switch(at(UTC, 2027, 3, 10, 12), "weekly", 1, weekly)
    _, change, _ = issues(after, at(UTC, 2027, 3, 17))
    assert (change.at, change.period_end) == (at(UTC, 2027, 3, 10, 12), at(UTC, 2027, 3, 17))
    # issued at the change: basic's Mar 10-31 back (the change's day is the new plan's), 30 × 22/31 =
    # 21.2903... -> -21.29; the first week on weekly, Mar 10-16, 7 of 7 days: 7.00; -21.29 + 7.00 = -14.29
    settled = bill(after, change, paid.advance_fees)
    assert fee_lines(settled) == [("base_fee_credit", "basic", "22/31", "-21.29"), ("base_fee", "w", "1", "7.00")]
    assert settled.lines([])[1].total_minor == -1429
