"""The declarative plans file of `tollway plans apply`: meters and plans with charges and entitlements.

    meters:
      - name: api-calls
        aggregation: count              # or sum, with field: request_bytes | response_bytes
        filter: {service: mock, route: mock, status: ["2xx", "3xx"]}
    plans:
      - name: pro
        currency: USD
        interval: month                 # week, month, quarter, year
        billing_anchor: calendar        # or anniversary
        base_fee: 29
        trial_days: 14
        minimum_commitment: "100"
        charges:
          - {meter: api-calls, model: graduated, tiers: [{up_to: 1000, unit_price: 0},
                                                         {up_to: null, unit_price: 0.0015}]}
        entitlements:
          - {meter: api-calls, limit: 100000, period: month, enforcement: soft}

Numbers with a fraction are read as the text written (0.0015 stays "0.0015", never a binary float),
so prices need no quotes. Services, routes and meters are named by name or id. A plan's charges and
entitlements are exactly those listed (others are deleted); meters and plans the file leaves out
are left alone. Fields left out take their defaults, as in a PUT, but tags are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from tollway.errors import TollwayError

TOP = ("meters", "plans")
METER_KEYS = ("name", "aggregation", "field", "filter", "tags")
FILTER_KEYS = ("service", "route", "status")
PLAN_KEYS = ("name", "currency", "interval", "billing_anchor", "base_fee", "trial_days", "minimum_commitment",
             "charges", "entitlements", "tags")


class PlansFileError(TollwayError):
    """A plans file that cannot be applied; the message lists every problem, one a line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the plans file cannot be applied:\n  " + "\n  ".join(problems))


class _Loader(yaml.SafeLoader):
    """YAML with numbers that have a fraction or exponent kept as written (exact prices)."""


_Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: loader.construct_scalar(node))


def load(text: str) -> dict[str, Any]:
    """The document in `text`; PlansFileError for YAML that is not a map of meters and plans."""
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader: no object is constructed
    except yaml.YAMLError as exc:
        raise PlansFileError([f"not valid YAML: {exc}".replace("\n", " ")]) from None
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise PlansFileError(["expected a map with meters and plans"])
    problems = [f"{key}: unknown key (expected {', '.join(TOP)})" for key in document if key not in TOP]
    for key in TOP:
        if document.get(key) is not None and not isinstance(document[key], list):
            problems.append(f"{key}: expected a list")
    for key, allowed in (("meters", METER_KEYS), ("plans", PLAN_KEYS)):
        for index, item in enumerate(document.get(key) or []):
            where = label(key, index, item)
            if not isinstance(item, Mapping):
                problems.append(f"{where}: expected a map")
                continue
            problems += [f"{where}: {name}: unknown key" for name in item if name not in allowed]
            if not isinstance(item.get("name"), str) or not item["name"]:
                problems.append(f"{where}: name: required")
            if key == "meters" and item.get("filter") is not None:
                if not isinstance(item["filter"], Mapping):
                    problems.append(f"{where}: filter: expected a map of {', '.join(FILTER_KEYS)}")
                else:
                    problems += [f"{where}: filter.{name}: unknown key" for name in item["filter"]
                                 if name not in FILTER_KEYS]
            if key == "plans":
                for part in ("charges", "entitlements"):
                    if item.get(part) is not None and not isinstance(item[part], list):
                        problems.append(f"{where}: {part}: expected a list")
    for key in TOP:
        seen: set[Any] = set()
        for item in document.get(key) or []:
            name = item.get("name") if isinstance(item, Mapping) else None
            if name in seen:
                problems.append(f"{key} ({name}): declared twice")
            seen.add(name)
    if problems:
        raise PlansFileError(problems)
    return {key: list(document.get(key) or []) for key in TOP}


def label(key: str, index: int, item: object) -> str:
    """How a problem names an item: "plans[0] (pro)"."""
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"{key}[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")
