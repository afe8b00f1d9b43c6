"""The parameters of a usage report, shared by GET /billable and `tollway report`.

`UsageQuery.parse(params, now)` reads raw strings and collects EVERY problem before raising one
QueryError, whose `fields` map each parameter to what is wrong with it (Kong's schema violation).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tollway.errors import TollwayError
from tollway.metering.periods import PERIODS, period_start

GROUPS = ("consumer", "service", "route", "status")
DEFAULT_SIZE = 100
MAX_SIZE = 1000
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class QueryError(TollwayError):
    """Bad report parameters: `fields` maps each parameter to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        details = "; ".join(f"{name}: {fields[name]}" for name in sorted(fields))  # Kong sorts them
        count = len(fields)
        super().__init__(f"schema violation ({details})" if count == 1
                         else f"{count} schema violations ({details})")


@dataclass(frozen=True)
class StatusFilter:
    """A status code (`200`) or class (`4xx`), as the half-open range it covers."""

    lo: int
    hi: int

    @classmethod
    def parse(cls, text: str) -> StatusFilter:
        text = text.strip().lower()
        if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
            return cls(int(text[0]) * 100, int(text[0]) * 100 + 100)
        if text.isdigit() and 100 <= int(text) <= 599:
            return cls(int(text), int(text) + 1)
        raise ValueError("expected a status code such as 200 or a class such as 4xx")


def encode_offset(position: int) -> str:
    """The opaque `offset` token of a page starting at row `position`."""
    return base64.urlsafe_b64encode(f"r{position}".encode()).decode().rstrip("=")


def decode_offset(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not an offset this endpoint returned") from None
    if not text.startswith("r") or not text[1:].isdigit():
        raise ValueError("not an offset this endpoint returned")
    return int(text[1:])


LATEST = 253_402_214_400  # 9999-12-31T00:00:00Z: later instants have no calendar day in every zone


def parse_instant(text: str, tz: ZoneInfo) -> int:
    """ISO 8601 (a date, or a time without offset, is read in `tz`) or epoch seconds, from 1970 to
    the year 9999; epoch seconds. ValueError saying what is expected otherwise."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and 0 <= number <= LATEST:
            return int(number)
        raise ValueError("expected ISO 8601 or epoch seconds from 0 (1970) to 253402214400 (9999-12-31)")
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        instant = moment.timestamp()
    except (ValueError, OverflowError):
        raise ValueError("expected ISO 8601 (2028-02-29T00:00:00+01:00) or epoch seconds") from None
    if not 0 <= instant <= LATEST:
        raise ValueError("expected an instant from 1970 to the year 9999")
    return int(instant)


MAX_NAME = 512  # longer than any id, name or custom_id the ledger keeps


@dataclass(frozen=True)
class UsageQuery:
    """A validated report request. `end` is None when open (at or after now)."""

    period: str = "day"
    start: int = 0
    end: int | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    consumer: str | None = None
    service: str | None = None
    route: str | None = None
    status: StatusFilter | None = None
    group_by: tuple[str, ...] = GROUPS
    size: int = DEFAULT_SIZE
    offset: int = 0
    csv: bool = False
    now: int = 0

    @classmethod
    def parse(cls, params: Mapping[str, str], now: float) -> UsageQuery:
        """Validate raw parameters (strings); raises QueryError listing every problem."""
        problems: dict[str, str] = {}
        known = {"period", "start", "end", "tz", "consumer", "service", "route", "status", "group_by",
                 "size", "offset", "csv"}
        for name in params:
            if name not in known:
                problems[name] = "unknown parameter"

        period = (params.get("period") or "day").strip().lower()
        if period not in PERIODS:
            problems["period"] = "expected one of: " + ", ".join(PERIODS)

        tz_name = (params.get("tz") or "UTC").strip()
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            problems["tz"] = f"unknown time zone '{tz_name}'"
            tz = ZoneInfo("UTC")

        start = end = None
        for name in ("start", "end"):
            text = params.get(name)
            if text:
                try:
                    value = parse_instant(text, tz)
                except ValueError as exc:
                    problems[name] = str(exc)
                    continue
                if name == "start":
                    start = value
                else:
                    end = value
        now_s = int(now)
        if start is None and "start" not in problems:
            start = period_start(now_s, "month", tz)
        # Usage is counted per minute: a range is read in whole minutes.
        start = (start or 0) - (start or 0) % 60
        if end is not None:
            end = end - end % 60 if end < now_s else None
        if end is not None and "start" not in problems and end <= start:
            problems["end"] = "must be after start"

        status = None
        if params.get("status"):
            try:
                status = StatusFilter.parse(params["status"])
            except ValueError as exc:
                problems["status"] = str(exc)

        group_by: tuple[str, ...] = GROUPS
        if "group_by" in params:
            names = [name.strip().lower() for name in params["group_by"].split(",") if name.strip()]
            unknown = [name for name in names if name not in GROUPS]
            if unknown:
                problems["group_by"] = f"expected a subset of: {', '.join(GROUPS)} (got '{', '.join(unknown)}')"
            group_by = tuple(name for name in GROUPS if name in names)

        size = DEFAULT_SIZE
        if params.get("size"):
            text = params["size"].strip()
            if text.isdigit() and 1 <= int(text) <= MAX_SIZE:
                size = int(text)
            else:
                problems["size"] = f"expected an integer from 1 to {MAX_SIZE}"

        offset = 0
        if params.get("offset"):
            try:
                offset = decode_offset(params["offset"])
            except ValueError as exc:
                problems["offset"] = str(exc)

        for name in ("consumer", "service", "route"):
            wanted = params.get(name) or ""
            if "\x00" in wanted:
                problems[name] = "must not contain a NUL character"
            elif len(wanted) > MAX_NAME:
                problems[name] = f"length must be at most {MAX_NAME}"

        csv = False
        if "csv" in params:
            flag = params["csv"].strip().lower()
            if flag in _TRUE:
                csv = True
            elif flag not in _FALSE:
                problems["csv"] = "expected true or false"

        if problems:
            raise QueryError(problems)
        return cls(period=period, start=start, end=end, tz=tz,
                   consumer=(params.get("consumer") or "").strip() or None,
                   service=(params.get("service") or "").strip() or None,
                   route=(params.get("route") or "").strip() or None,
                   status=status, group_by=group_by, size=size, offset=offset, csv=csv, now=now_s)
