"""What one worker counts between two reports to the master: plain dicts keyed by label values.

The log phase adds to these dicts and nothing else (no lock, no system call, no file); once a
second the worker hands `take()`'s report to the master over its control channel and starts
afresh, as Kong's workers count in lua-resty-counter and sync to the shared dict every second.
The master adds the reports up (tollway/plugins/prometheus/exporter.py). A worker that dies loses
at most the last second of counts; its spool still has every call for billing.

A histogram is a list: one count per bucket of BUCKETS (the last one is +Inf, not cumulative),
then the sum of the observed values.
"""

from __future__ import annotations

from typing import Any, Final

# Kong's buckets, in milliseconds (kong/plugins/prometheus/exporter.lua).
KONG_LATENCY_BUCKETS: Final = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
UPSTREAM_LATENCY_BUCKETS: Final = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)
# Histogram name -> its buckets: request latency uses the upstream's, as Kong's does.
BUCKETS: Final = {"kong": KONG_LATENCY_BUCKETS, "upstream": UPSTREAM_LATENCY_BUCKETS,
                  "request": UPSTREAM_LATENCY_BUCKETS}

RequestKey = tuple[str, str, int, str, str]     # service, route, code, source, consumer
BandwidthKey = tuple[str, str, str, str]        # service, route, direction, consumer
LatencyKey = tuple[str, str]                    # service, route


def new_histogram(bounds: tuple[int, ...]) -> list[float]:
    return [0] * (len(bounds) + 2)


def observe(histogram: list[float], bounds: tuple[int, ...], value: float) -> None:
    """Count `value` into its bucket (the first bound >= value, else +Inf) and the sum."""
    index = 0
    for bound in bounds:  # at most 15 comparisons, most calls stop in the first few
        if value <= bound:
            break
        index += 1
    histogram[index] += 1
    histogram[-1] += value


class Recorder:
    """A worker's counts since its last report."""

    __slots__ = ("bandwidth", "kong", "request", "requests", "upstream")

    def __init__(self) -> None:
        self.requests: dict[RequestKey, int] = {}
        self.bandwidth: dict[BandwidthKey, int] = {}
        self.kong: dict[LatencyKey, list[float]] = {}
        self.upstream: dict[LatencyKey, list[float]] = {}
        self.request: dict[LatencyKey, list[float]] = {}

    def take(self) -> dict[str, Any] | None:
        """The counts so far as a report (plain lists, for the control channel), and start afresh;
        None when nothing was counted."""
        if not (self.requests or self.bandwidth or self.request or self.upstream or self.kong):
            return None
        report = {
            "requests": [[*key, count] for key, count in self.requests.items()],
            "bandwidth": [[*key, count] for key, count in self.bandwidth.items()],
            "latency": {name: [[*key, histogram] for key, histogram in getattr(self, name).items()]
                        for name in BUCKETS},
        }
        self.requests, self.bandwidth = {}, {}
        self.kong, self.upstream, self.request = {}, {}, {}
        return report
