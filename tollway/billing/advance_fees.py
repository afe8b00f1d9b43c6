"""Base fees billed in advance, and their corrections, pure (no database).

An invoice issued at the start of a billing window bills that window's base fee in advance, one
`base_fee` line per plan version in effect (as the timeline knows it then), prorated by local days
and free during the trial. A line's `[starts_at, ends_at)` spans exactly the local days it pays
for (a trial moves its start to the trial's end).

What changes later (a plan change within the window, a cancellation now) is settled on the invoice
issued at the window's end, by local days and per plan version:

    billed   the days each version's `base_fee` lines on the invoice issued at the window's start
             paid for
    due      the days each version covers in the window by the timeline now (out of trial)

Days billed and no longer due give a `base_fee_credit` line (negative: the unused days, prorated);
days due and not billed give a `base_fee_charge` line (prorated); one line per run of consecutive
days, credits first. Each line is `fee × days / period_days`, rounded once, half up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from tollway.billing.currency import Currency
from tollway.billing.money import decimal_text, minor_units
from tollway.billing.periods import BillingPeriod, local_day, local_midnight
from tollway.billing.proration import Share, prorate

FEE_KINDS = ("base_fee", "base_fee_credit", "base_fee_charge")


@dataclass(frozen=True)
class FeeSpan:
    """Days of a window one plan version's base fee pays for: [starts_at, ends_at), trial excluded."""

    plan_id: str
    plan_name: str
    plan_version: int
    fee: Decimal
    starts_at: int
    ends_at: int
    sign: int = 1               # -1: days given back (a base_fee_credit line)

    @property
    def key(self) -> tuple[str, int]:
        return self.plan_id, self.plan_version


def fee_days(period: BillingPeriod, starts_at: int, ends_at: int) -> list[date]:
    """The local days of `period` in [starts_at, ends_at): the day it starts on, not the day it ends on
    (an end at or after the period's end: up to its last day), as proration.billable_share counts them."""
    first = max(period.start_day, local_day(starts_at, period.tz))
    last = period.end_day if ends_at >= period.end_epoch else min(period.end_day, local_day(ends_at, period.tz))
    return [first + timedelta(days=offset) for offset in range((last - first).days)]


@dataclass(frozen=True)
class FeeLine:
    """A base fee line as invoicing writes it."""

    kind: str
    span: FeeSpan
    share: Share
    amount: Decimal
    amount_minor: int

    @property
    def quantity(self) -> str:
        return "1" if self.share.is_whole else f"{self.share.days}/{self.share.period_days}"

    @property
    def unit_price(self) -> str:
        return decimal_text(self.span.fee)


def fee_line(period: BillingPeriod, span: FeeSpan, currency: Currency, kind: str = "base_fee") -> FeeLine:
    """`span.fee` for the span's days of `period`, rounded once; a credit (sign -1) is negative."""
    share = Share(len(fee_days(period, span.starts_at, span.ends_at)), period.days)
    amount = prorate(span.fee, share, currency) * span.sign
    if span.sign < 0:
        kind = "base_fee_credit"
    return FeeLine(kind, span, share, amount, minor_units(amount, currency))


def _runs(days: Iterable[date]) -> Iterator[list[date]]:
    run: list[date] = []
    for day in sorted(days):
        if run and day != run[-1] + timedelta(days=1):
            yield run
            run = []
        run.append(day)
    if run:
        yield run


def corrections(period: BillingPeriod, billed: Sequence[FeeSpan], due: Sequence[FeeSpan]) -> list[FeeSpan]:
    """The spans that settle what `billed` paid for against what is `due` (see the module docstring):
    credits (sign -1) first, then charges, each in day order."""
    counts: dict[tuple[str, int], Counter[date]] = {}
    about: dict[tuple[str, int], FeeSpan] = {}
    for span in billed:
        counts.setdefault(span.key, Counter()).update({day: -span.sign for day in
                                                       fee_days(period, span.starts_at, span.ends_at)})
        about.setdefault(span.key, span)
    for span in due:
        counts.setdefault(span.key, Counter()).update(dict.fromkeys(fee_days(period, span.starts_at, span.ends_at), 1))
        about[span.key] = span
    found: list[FeeSpan] = []
    for sign in (-1, 1):
        for key, days in counts.items():
            picked = [day for day, count in days.items() for _ in range(abs(count)) if count * sign > 0]
            for run in _runs(set(picked)):
                model = about[key]
                starts = max(local_midnight(run[0], period.tz), period.start_epoch)
                ends = min(local_midnight(run[-1] + timedelta(days=1), period.tz), period.end_epoch)
                found.append(FeeSpan(model.plan_id, model.plan_name, model.plan_version, model.fee, starts, ends,
                                     sign))
    found.sort(key=lambda span: (span.sign, span.starts_at))
    return found
