"""What one worker counts between two reports to the master: a Tally per service, route and consumer.

The log phase finds its call's Tally with one dict lookup and adds to plain integers and lists
(no lock, no system call, no file); once a second the worker hands `take()`'s report to the
master over its control channel and starts afresh, as Kong's workers count in lua-resty-counter
and sync to the shared dict every second. The master adds the reports up
(tollway/plugins/prometheus/exporter.py). A worker that dies loses at most the last second of
counts; its spool still has every call for billing.

In a report a histogram is a list: one count per bucket of its bounds (the last one is +Inf;
not cumulative), then the sum of the observed values.
"""

from __future__ import annotations

from typing import Any

# Kong's buckets, in milliseconds (kong/plugins/prometheus/exporter.lua). Not Final: mypyc would
# not have them set when BUCKETS is built.
KONG_LATENCY_BUCKETS: tuple[float, ...] = (1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0,
                                           200.0, 500.0, 750.0, 1000.0)
UPSTREAM_LATENCY_BUCKETS: tuple[float, ...] = (25.0, 50.0, 80.0, 100.0, 250.0, 400.0, 700.0, 1000.0, 2000.0,
                                               5000.0, 10000.0, 30000.0, 60000.0)
# Histogram name -> its buckets: request latency uses the upstream's, as Kong's does.
BUCKETS: dict[str, tuple[float, ...]] = {"kong": KONG_LATENCY_BUCKETS, "upstream": UPSTREAM_LATENCY_BUCKETS,
                  "request": UPSTREAM_LATENCY_BUCKETS}

RequestKey = tuple[str, str, int, str, str]     # service, route, code, source, consumer
BandwidthKey = tuple[str, str, str, str]        # service, route, direction, consumer
LatencyKey = tuple[str, str]                    # service, route


class Histogram:
    """Counts per bucket of `bounds` (the last one +Inf) and the sum (unboxed when compiled)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count `value` into its bucket: the first bound >= value, else +Inf."""
        index = 0
        for bound in self.bounds:  # at most 15 comparisons; most calls stop in the first few
            if value <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.total += value

    def as_list(self) -> list[float]:
        """As a report has it: the counts, then the sum."""
        return [*self.counts, self.total]


class Tally:
    """One worker's counts for one service, route and consumer label, since its last report."""

    __slots__ = ("codes", "consumer", "egress", "ingress", "kong", "request", "route", "service", "upstream")

    def __init__(self, service: str, route: str, consumer: str) -> None:
        # Kong's labels, as they were when the tally was made
        self.service = service
        self.route = route
        self.consumer = consumer
        self.codes: dict[int, int] = {}    # status * 2 + 1 if the upstream answered (source) -> calls
        self.ingress = 0
        self.egress = 0
        self.kong = Histogram(KONG_LATENCY_BUCKETS)
        self.upstream = Histogram(UPSTREAM_LATENCY_BUCKETS)
        self.request = Histogram(UPSTREAM_LATENCY_BUCKETS)


class Recorder:
    """A worker's tallies since its last report, by route id, then consumer label (two lookups of
    strings whose hash is kept: no key is built per call)."""

    __slots__ = ("tallies",)

    def __init__(self) -> None:
        self.tallies: dict[str, dict[str, Tally]] = {}

    def take(self) -> dict[str, Any] | None:
        """The counts so far as a report (plain lists, for the control channel), and start afresh;
        None when nothing was counted."""
        tallies = self.tallies
        if not tallies:
            return None
        self.tallies = {}
        requests: list[list[Any]] = []
        bandwidth: list[list[Any]] = []
        latency: dict[str, list[list[Any]]] = {name: [] for name in BUCKETS}
        for tally in (tally for by_consumer in tallies.values() for tally in by_consumer.values()):
            labels = [tally.service, tally.route]
            for code, calls in tally.codes.items():
                requests.append([*labels, code >> 1, "service" if code & 1 else "kong", tally.consumer, calls])
            if tally.ingress:
                bandwidth.append([*labels, "ingress", tally.consumer, tally.ingress])
            if tally.egress:
                bandwidth.append([*labels, "egress", tally.consumer, tally.egress])
            for name, histogram in (("kong", tally.kong), ("upstream", tally.upstream), ("request", tally.request)):
                if any(histogram.counts):
                    latency[name].append([*labels, histogram.as_list()])
        return {"requests": requests, "bandwidth": bandwidth, "latency": latency}
