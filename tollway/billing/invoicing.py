"""What an invoice bills: a subscription's billing periods and their lines, pure (no database).

`billing_windows(timeline, since, until)` lists the periods of a subscription that ended in
[since, until]: its cycle's periods in its zone, cut where it started, ended, or changed to a plan
with another cycle (a re-anchoring change ends the period there, as Stripe does). A window is cut
into segments, one per phase (plan version) in effect during it: a mid-period plan change splits
the usage at the change's minute and prorates each version's base fee by its local days.

`issues(timeline, until)` lists its invoices: one when it starts (the first window's base fee, in
advance) and one at each window's end (that window's usage, in arrears, and the next window's base
fee, in advance, if it continues). `Bill.figures` says which ledger figures an invoice needs;
`Bill.lines(figures)` prices them:

    per arrears segment:    one usage line per charge with its tier breakdown, the minimum
                            commitment's true-up (against the segment's base fee and usage)
    arrears window:         base_fee_credit / base_fee_charge lines settling the fee billed in
                            advance against the timeline now (advance_fees.corrections)
    per advance segment:    base_fee (its share of the period, out of trial)
    then:                   credit lines (negative), credit notes of earlier invoices deducted

Money is the engine's (quote.price_period): each line rounded once, half up, to the minor unit;
the subtotal, credits and total are sums of rounded lines. Credits never take the total below 0:
what a credit note has left over waits for the next invoice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from tollway.billing.advance_fees import FeeLine, FeeSpan, corrections, fee_line
from tollway.billing.charge_models import TierRow
from tollway.billing.currency import Currency
from tollway.billing.meters import Figure
from tollway.billing.money import decimal_text, from_minor
from tollway.billing.periods import BillingPeriod, local
from tollway.billing.proration import billable_share, trial_end
from tollway.billing.quote import Line, price_period
from tollway.billing.subscriptions import Phase, Timeline
from tollway.billing.versions import PlanVersion

STATUSES = ("draft", "finalized", "void")


@dataclass(frozen=True)
class Window:
    """One billing period of a subscription as an invoice bills it: [starts_at, ends_at) of `period`."""

    period: BillingPeriod        # the cycle's whole period: the denominator of proration
    starts_at: int
    ends_at: int


def _cycle_key(phase: Phase) -> tuple[str, str, int]:
    return phase.interval, phase.billing_anchor, phase.anchored_at


def _windows(timeline: Timeline, since: int) -> Iterator[Window]:
    at = max(since, timeline.started_at)
    tz = timeline.tz
    while timeline.ends_at is None or at < timeline.ends_at:
        phase = timeline.current(at)
        period = phase.cycle(tz).period_at(at)
        end = period.end_epoch
        if timeline.ends_at is not None:
            end = min(end, timeline.ends_at)
        for later in timeline.phases:
            if at < later.starts_at < end and _cycle_key(later) != _cycle_key(phase):
                end = later.starts_at
        yield Window(period, max(period.start_epoch, at), end)
        at = end


def billing_windows(timeline: Timeline, since: int, until: int) -> Iterator[Window]:
    """The windows of `timeline` that start at or after `since` and end at or before `until`."""
    for window in _windows(timeline, since):
        if window.ends_at > until:
            return
        yield window


@dataclass(frozen=True)
class Issue:
    """One invoice of a subscription, issued `at` its start or a window's end: the usage of the window
    that ended then (`arrears`), the base fee of the window that starts then (`advance`).

    Its period (the unique key with the subscription) is the advance window; the last invoice, when
    nothing follows, has the empty period [at, at)."""

    at: int
    arrears: Window | None
    advance: Window | None
    tz: ZoneInfo

    @property
    def period_end(self) -> int:
        return self.at if self.advance is None else self.advance.ends_at

    @property
    def month(self) -> str:
        """YYYY-MM of the local issue time (the advance period's start): what `--period` and
        `?period=` select."""
        return local(self.at, self.tz).strftime("%Y-%m")


def issues(timeline: Timeline, until: int) -> Iterator[Issue]:
    """Every invoice of `timeline` due by `until`: the opening one at its start, then one at each
    window's end."""
    if timeline.started_at > until:
        return
    windows = _windows(timeline, timeline.started_at)
    current = next(windows, None)
    if current is None:   # ended as it started: nothing to bill
        return
    yield Issue(timeline.started_at, None, current, timeline.tz)
    while current is not None and current.ends_at <= until:
        following = next(windows, None)
        yield Issue(current.ends_at, current, following, timeline.tz)
        current = following


@dataclass(frozen=True)
class Segment:
    """The part of a window one phase covers, priced by its plan version."""

    phase: Phase
    version: PlanVersion
    starts_at: int
    ends_at: int


def segments(timeline: Timeline, window: Window | None,
             version_of: Callable[[Phase], PlanVersion]) -> tuple[Segment, ...]:
    found: list[Segment] = []
    if window is None:
        return ()
    for phase in timeline.phases:
        lo = max(window.starts_at, phase.starts_at)
        hi = min(window.ends_at, phase.ends_at if phase.ends_at is not None else window.ends_at)
        if lo < hi:
            found.append(Segment(phase, version_of(phase), lo, hi))
    return tuple(found)


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice: `amount` rounded once, half up; `amount_minor` the same in minor units."""

    kind: str                    # base_fee, usage, minimum_commitment or credit
    starts_at: int
    ends_at: int
    amount: Decimal
    amount_minor: int
    plan_id: str | None = None
    plan_name: str | None = None
    plan_version: int | None = None
    meter: str | None = None
    model: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    tiers: tuple[dict[str, Any], ...] = ()
    proration: dict[str, Any] | None = None
    credit_note_id: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {"kind": self.kind, "starts_at": self.starts_at, "ends_at": self.ends_at,
                "amount": format(self.amount, "f"), "amount_minor": self.amount_minor, "plan_id": self.plan_id,
                "plan_name": self.plan_name, "plan_version": self.plan_version, "meter": self.meter,
                "model": self.model, "quantity": self.quantity, "unit_price": self.unit_price,
                "tiers": list(self.tiers), "proration": self.proration, "credit_note_id": self.credit_note_id}


def _unit_price(tiers: Sequence[TierRow]) -> str | None:
    """The unit price when one tier priced every unit without a flat fee, else None (see the tiers)."""
    used = [row for row in tiers if row.units > 0]
    if len(used) == 1 and used[0].flat_fee == 0 and used[0].packages is None:
        return decimal_text(used[0].unit_price)
    return None


def _line(segment: Segment, line: Line) -> InvoiceLine:
    phase = segment.phase
    if line.kind == "usage":
        quantity = None if line.units is None else decimal_text(line.units)
        unit_price = _unit_price(line.tiers)
    else:
        share = line.share
        quantity = "1" if share is None or share.is_whole else f"{share.days}/{share.period_days}"
        unit_price = None if line.price is None else decimal_text(line.price)
    return InvoiceLine(line.kind, segment.starts_at, segment.ends_at, line.amount, line.amount_minor,
                       phase.plan_id, segment.version.name, phase.version, line.meter, line.model, quantity,
                       unit_price, tuple(row.to_json() for row in line.tiers),
                       None if line.share is None else line.share.to_json())


@dataclass(frozen=True)
class Credit:
    """What a credit note still has to deduct."""

    note_id: str
    remaining_minor: int


@dataclass(frozen=True)
class Totals:
    currency: Currency
    subtotal_minor: int
    credits_minor: int           # zero or negative

    @property
    def total_minor(self) -> int:
        return self.subtotal_minor + self.credits_minor

    def to_row(self) -> dict[str, Any]:
        c = self.currency
        return {"currency": c.code, "subtotal": format(from_minor(self.subtotal_minor, c), "f"),
                "subtotal_minor": self.subtotal_minor, "credits": format(from_minor(self.credits_minor, c), "f"),
                "credits_minor": self.credits_minor, "total": format(from_minor(self.total_minor, c), "f"),
                "total_minor": self.total_minor}


def credit_lines(issue: Issue, currency: Currency, charged_minor: int,
                 credits: Sequence[Credit]) -> list[InvoiceLine]:
    """Credit notes deducted, oldest first, up to what the charge lines add up to."""
    left = max(charged_minor, 0)
    lines = []
    for credit in credits:
        taken = min(credit.remaining_minor, left)
        if taken <= 0:
            continue
        left -= taken
        lines.append(InvoiceLine("credit", issue.at, issue.period_end, from_minor(-taken, currency), -taken,
                                 credit_note_id=credit.note_id))
    return lines


def _fee_span(timeline: Timeline, segment: Segment) -> FeeSpan:
    """The days a segment's base fee pays for: the segment out of its plan's trial."""
    plan = segment.version.plan
    starts = max(segment.starts_at, trial_end(timeline.started_at, plan.trial_days, timeline.tz))
    return FeeSpan(segment.phase.plan_id, segment.version.name, segment.phase.version, plan.base_fee,
                   min(starts, segment.ends_at), segment.ends_at)


def _fee_invoice_line(line: FeeLine) -> InvoiceLine:
    span = line.span
    return InvoiceLine(line.kind, span.starts_at, span.ends_at, line.amount, line.amount_minor, span.plan_id,
                       span.plan_name, span.plan_version, quantity=line.quantity, unit_price=line.unit_price,
                       proration=line.share.to_json())


@dataclass(frozen=True)
class Bill:
    """One invoice of one subscription: what to read from the ledger, and how to price it.

    `arrears` are the segments of the window that ended at the issue (usage, commitment true-up,
    base fee corrections against `billed`, the base_fee lines the window was billed in advance);
    `advance` those of the window that starts then (its base fee)."""

    subscription: dict[str, Any]
    timeline: Timeline
    issue: Issue
    arrears: tuple[Segment, ...]
    advance: tuple[Segment, ...]
    billed: tuple[FeeSpan, ...] = field(default=())
    credits: tuple[Credit, ...] = field(default=())

    @property
    def currency(self) -> Currency:
        found = self.advance or self.arrears
        return found[-1].version.plan.currency if found else _no_currency()

    @cached_property
    def figures(self) -> tuple[Figure, ...]:
        """Each charged meter of each arrears segment's version over the segment."""
        return tuple(Figure(segment.version.meters[meter], segment.starts_at, segment.ends_at)
                     for segment in self.arrears for meter in segment.version.plan.charges)

    @property
    def advance_fees(self) -> tuple[FeeSpan, ...]:
        """The days each advance segment's base fee pays for."""
        return tuple(_fee_span(self.timeline, segment) for segment in self.advance)

    def charge_lines(self, figures: Sequence[int]) -> list[InvoiceLine]:
        lines: list[InvoiceLine] = []
        counts = iter(figures)
        tz = self.timeline.tz
        window = self.issue.arrears
        if window is not None:
            for segment in self.arrears:
                plan = segment.version.plan
                usage = {meter: next(counts) for meter in plan.charges}
                ends = None if segment.ends_at >= window.period.end_epoch else segment.ends_at
                share = billable_share(window.period, segment.starts_at, ends,
                                       trial_end(self.timeline.started_at, plan.trial_days, tz))
                # the true-up counts the segment's base fee (billed in advance) with its usage
                lines.extend(_line(segment, line) for line in price_period(plan, usage, share).lines
                             if line.kind != "base_fee")
            due = [_fee_span(self.timeline, segment) for segment in self.arrears]
            lines.extend(_fee_invoice_line(fee_line(window.period, span, self.currency, "base_fee_charge"))
                         for span in corrections(window.period, self.billed, due))
        if self.issue.advance is not None:
            period = self.issue.advance.period
            lines.extend(_fee_invoice_line(fee_line(period, span, self.currency)) for span in self.advance_fees)
        return lines

    def lines(self, figures: Sequence[int]) -> tuple[list[InvoiceLine], Totals]:
        charged = self.charge_lines(figures)
        subtotal = sum(line.amount_minor for line in charged)
        credits = credit_lines(self.issue, self.currency, subtotal, self.credits)
        return charged + credits, Totals(self.currency, subtotal, sum(line.amount_minor for line in credits))


def _no_currency() -> Currency:
    raise ValueError("an invoice without segments has no currency")
