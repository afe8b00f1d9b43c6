"""Latency histograms: counts of calls per log-spaced latency bucket, exact in count.

The ledger's average latency says nothing of the tail. Beside it, the flusher keeps, per service,
route and minute (rolled up like the usage rows), how many calls took how long, in buckets four
to an octave: bucket 4k+j (k >= 1, j in 0..3) holds latencies from (4+j) * 2**(k-1) to
(5+j) * 2**(k-1) microseconds, buckets 0..3 hold 0..3 us. A bucket is at most 25% wide, so a
percentile read from them is within 25% of the true value, and never below it (`percentile`
answers a bucket's upper edge); the count of calls under any edge is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

SUB_BUCKETS: Final = 4  # per octave
BUCKETS: Final = 128    # a histogram's length: the last bucket holds everything from about 2.4 hours on


def bucket_of(latency_us: int) -> int:
    """The bucket of a latency in microseconds."""
    if latency_us < 4:
        return latency_us if latency_us > 0 else 0
    width = latency_us.bit_length() - 3        # the octave's buckets are 2**width us wide
    return min(SUB_BUCKETS * (width + 1) + (latency_us >> width) - 4, BUCKETS - 1)


# The flusher counts every call into a bucket (see docs/architecture.md, Performance notes): below
# 64 us by a table of the latency, below 65,536 us by a table of latency >> 4 (buckets there are
# at least 16 us wide), above by bucket_of.
_SMALL: Final = [bucket_of(us) for us in range(64)]
_MIDDLE: Final = [bucket_of(sixteenths << 4) for sixteenths in range(4096)]


def count_into(histogram: list[int], latency_us: int) -> None:
    """Count one call of this latency into a histogram of BUCKETS counts."""
    if latency_us < 64:
        bucket = _SMALL[latency_us] if latency_us > 0 else 0
    elif latency_us < 65536:
        bucket = _MIDDLE[latency_us >> 4]
    else:
        bucket = bucket_of(latency_us)
    histogram[bucket] += 1


def nonzero(histogram: list[int]) -> dict[int, int]:
    """bucket -> count of a histogram of BUCKETS counts, for the buckets that counted calls."""
    return {bucket: count for bucket, count in enumerate(histogram) if count}


def bucket_upper_us(bucket: int) -> int:
    """The first latency (us) above bucket `bucket`: its upper edge, exclusive."""
    if bucket < 4:
        return bucket + 1
    width = bucket // SUB_BUCKETS - 1
    return (bucket % SUB_BUCKETS + 5) << width


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The latency (ms) at or under which `fraction` of the calls fell, as the upper edge of the
    bucket that holds that call; None when there are no calls."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total - 1e-9))  # the call at that rank (0.99 of 100: the 99th)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket_upper_us(bucket) / 1000
    return bucket_upper_us(max(counts)) / 1000


def merge(into: dict[int, int], counts: Iterable[tuple[int, int]]) -> None:
    for bucket, count in counts:
        into[bucket] = into.get(bucket, 0) + count
