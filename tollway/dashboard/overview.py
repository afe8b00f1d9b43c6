"""The overview's figures over a span, with the days that are over read once.

Over a month of 10,000 consumers a span's ledger rows number in the millions, and all but today's
never change again: the flusher counts a call within seconds, so a UTC day that ended SETTLE ago is
final. `Overview.figures` splits the span at the start of the latest final day: the part before
(settled) is read once and kept until the next day settles, the part after (live) is read at every
refresh. Both parts are read by figures.py, with /billable's code; sums over the two are the sums
over the span (the ledger's counts are integers), and histograms merge exactly, so a page still
equals /billable over the same range.
"""

from __future__ import annotations

from tollway.config import Settings
from tollway.dashboard import figures
from tollway.dashboard.figures import Span, Totals, Traffic
from tollway.store.db import Database

SETTLE = 3600  # seconds after a UTC day's end from which its usage is taken as final
# The period totals are summed over, by the chart's: the hour's start is read off hour rows less a
# few minute rows, where one year-long period would read the month's less every minute before it;
# and a period per chart bucket would return a row per consumer and minute.
TOTALS = {"minute": "hour", "hour": "day", "day": "day"}


def settled_until(start: int, now: int) -> int:
    """Where a span starting at `start` stops being settled: the latest final day's end (or `start`)."""
    final = now - SETTLE
    return max(start, final - final % 86_400)


class Overview:
    """The overview's traffic and totals per span, the settled part of each kept in memory."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self.settled: dict[tuple[str, int, int], tuple[Traffic, Totals]] = {}

    async def figures(self, span: Span, now: int) -> tuple[Traffic, Totals]:
        start = figures.span_start(span, now)
        seal = settled_until(start, now)
        if seal == start:
            return (await figures.traffic(self.db, self.settings, span, now, start=start),
                    await figures.totals(self.db, self.settings, start, None, now, period=TOTALS[span.period]))
        key = (span.name, start, seal)
        settled = self.settled.get(key)
        if settled is None:
            settled = (await figures.traffic(self.db, self.settings, span, now, start=start, end=seal),
                       await figures.totals(self.db, self.settings, start, seal, now))
            # Only this seal's parts can be asked for again: the others' days are gone from every span.
            self.settled = {other: value for other, value in self.settled.items() if other[2] == seal}
            self.settled[key] = settled
        live_traffic = await figures.traffic(self.db, self.settings, span, now, start=seal)
        live_totals = await figures.totals(self.db, self.settings, seal, None, now, period="day")  # seal: a day's start
        return figures.joined(settled[0], live_traffic), settled[1].add(live_totals)
