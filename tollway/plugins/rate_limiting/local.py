"""The `local` policy: counters shared by the workers of one node, exact, with no network.

Every period's counter of a call moves under one lock of the node's SharedCounters
(tollway/counters.py): either each has room for the call and each is increased, or none changes.
So, however many workers race, a window admits at most its limit, exactly its limit when more
arrive, and a refused call consumes nothing.
"""

from __future__ import annotations

from tollway.counters import Key, SharedCounters


class LocalPolicy:
    """Take one call from every period's counter at once, on the node's shared counters."""

    __slots__ = ("counters",)

    def __init__(self, counters: SharedCounters) -> None:
        self.counters = counters

    def take(self, keys: list[Key], window_ends: list[int], limits: list[int],
             now: int) -> tuple[bool, list[int]]:
        """(admitted, the counts after): raises tollway.counters.TableFull when a counter has no slot."""
        return self.counters.add(keys, window_ends, limits, 1, now)
