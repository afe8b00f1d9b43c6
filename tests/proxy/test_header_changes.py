"""Response header changes applied in runs give the headers that applying them one by one gives."""

from __future__ import annotations

import random

from tollway.proxy.call import HeaderChange, apply_header_changes


def one_by_one(headers: list[tuple[bytes, bytes]], changes: list[HeaderChange]) -> None:
    """The plain reading of the changes: each in turn."""
    for name, value, replace in changes:
        if replace:
            headers[:] = [item for item in headers if item[0].lower() != name.lower()]
        if value is not None:
            headers.append((name, value))


def test_runs_of_changes_match_applying_them_one_by_one() -> None:
    rng = random.Random(17)
    names = [b"X-A", b"x-a", b"X-B", b"RateLimit-Limit", b"Retry-After", b"Date"]
    for _ in range(3000):
        headers = [(rng.choice(names), b"u%d" % i) for i in range(rng.randint(0, 6))]
        changes: list[HeaderChange] = [(rng.choice(names), rng.choice([None, b"v%d" % i]), rng.random() < 0.7)
                                       for i in range(rng.randint(0, 8))]
        expected = list(headers)
        one_by_one(expected, changes)
        apply_header_changes(headers, changes)
        assert headers == expected, changes
