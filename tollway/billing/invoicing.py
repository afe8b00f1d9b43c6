"""What an invoice bills: a subscription's billing periods and their lines, pure (no database).

`billing_windows(timeline, since, until)` lists the periods of a subscription that ended in
[since, until]: its cycle's periods in its zone, cut where it started, ended, or changed to a plan
with another cycle (a re-anchoring change ends the period there, as Stripe does). A window is cut
into segments, one per phase (plan version) in effect during it: a mid-period plan change splits
the usage at the change's minute and prorates each version's base fee by its local days.

`Bill.figures` says which ledger figures the window needs; `Bill.lines(figures)` prices them:

    per segment, in order:  base_fee (its share of the period, out of trial), one usage line per
                            charge with its tier breakdown, the minimum commitment's true-up
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

    @property
    def month(self) -> str:
        """YYYY-MM of the local start: what `--period` and `?period=` select."""
        return local(self.starts_at, self.period.tz).strftime("%Y-%m")


def _cycle_key(phase: Phase) -> tuple[str, str, int]:
    return phase.interval, phase.billing_anchor, phase.anchored_at


def billing_windows(timeline: Timeline, since: int, until: int) -> Iterator[Window]:
    """The windows of `timeline` that start at or after `since` and end at or before `until`."""
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
        if end > until:
            return
        yield Window(period, max(period.start_epoch, at), end)
        at = end


@dataclass(frozen=True)
class Segment:
    """The part of a window one phase covers, priced by its plan version."""

    phase: Phase
    version: PlanVersion
    starts_at: int
    ends_at: int


def segments(timeline: Timeline, window: Window, version_of: Callable[[Phase], PlanVersion]) -> tuple[Segment, ...]:
    found = []
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


def credit_lines(window: Window, currency: Currency, charged_minor: int,
                 credits: Sequence[Credit]) -> list[InvoiceLine]:
    """Credit notes deducted, oldest first, up to what the charge lines add up to."""
    left = max(charged_minor, 0)
    lines = []
    for credit in credits:
        taken = min(credit.remaining_minor, left)
        if taken <= 0:
            continue
        left -= taken
        lines.append(InvoiceLine("credit", window.starts_at, window.ends_at, from_minor(-taken, currency), -taken,
                                 credit_note_id=credit.note_id))
    return lines


@dataclass(frozen=True)
class Bill:
    """One window of one subscription: what to read from the ledger, and how to price it."""

    subscription: dict[str, Any]
    timeline: Timeline
    window: Window
    segments: tuple[Segment, ...]
    credits: tuple[Credit, ...] = field(default=())

    @property
    def currency(self) -> Currency:
        return self.segments[-1].version.plan.currency if self.segments else _no_currency()

    @cached_property
    def figures(self) -> tuple[Figure, ...]:
        """Each charged meter of each segment's version over the segment."""
        return tuple(Figure(segment.version.meters[meter], segment.starts_at, segment.ends_at)
                     for segment in self.segments for meter in segment.version.plan.charges)

    def charge_lines(self, figures: Sequence[int]) -> list[InvoiceLine]:
        lines: list[InvoiceLine] = []
        counts = iter(figures)
        tz = self.timeline.tz
        for segment in self.segments:
            plan = segment.version.plan
            usage = {meter: next(counts) for meter in plan.charges}
            ends = None if segment.ends_at >= self.window.period.end_epoch else segment.ends_at
            share = billable_share(self.window.period, segment.starts_at, ends,
                                   trial_end(self.timeline.started_at, plan.trial_days, tz))
            lines.extend(_line(segment, line) for line in price_period(plan, usage, share).lines)
        return lines

    def lines(self, figures: Sequence[int]) -> tuple[list[InvoiceLine], Totals]:
        charged = self.charge_lines(figures)
        subtotal = sum(line.amount_minor for line in charged)
        credits = credit_lines(self.window, self.currency, subtotal, self.credits)
        return charged + credits, Totals(self.currency, subtotal, sum(line.amount_minor for line in credits))


def _no_currency() -> Currency:
    raise ValueError("a window without segments has no currency")
