"""rate-limiting's response header lines for one call, built in C (_headers.c; handler.py uses it)."""

from typing import Any

def block(layout: tuple[Any, ...], limits: list[int], counts: list[int], ends: list[int], now: int,
          rejected: bool, /) -> bytes: ...
