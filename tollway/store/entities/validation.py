"""Check data against fields (entity or plugin config), fill defaults, and collect every problem.

`validate(fields, data)` returns the cleaned value and an errors dict in Kong's `fields` shape:
a message per field, a dict for a record's fields, a list (None where fine) for array elements.
"""

from __future__ import annotations

import copy
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from tollway.store.entities.schema import Errors, Fields

REQUIRED = "required field missing"
UNKNOWN = "unknown field"
_NAME = re.compile(r"^[A-Za-z0-9_.\-~]+$")  # ASCII, as Kong's (Lua's %w): not any Unicode letter
_TAG = re.compile(r"^[\x20-\x2b\x2d\x2e\x30-\x7e\u0080-\U0010ffff]+$")  # printable, no ',' or '/'
_HEADER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

_INT64 = (-(1 << 63), (1 << 63) - 1)

_EXPECTED = {
    "string": "expected a string", "boolean": "expected a boolean", "integer": "expected an integer",
    "number": "expected a number", "array": "expected an array", "set": "expected a set",
    "map": "expected a map", "record": "expected a record", "foreign": "expected a record",
}


def is_uuid(text: Any) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def validate(fields: Fields, data: Mapping[str, Any], *, partial: bool = False) -> tuple[dict[str, Any], Errors]:
    """Validate a record: unknown keys, each field, defaults for absent ones (unless partial)."""
    out: dict[str, Any] = {}
    errors: Errors = {}
    for key in data:
        if key not in fields:
            errors[key] = UNKNOWN
        elif "shorthand_for" in fields[key]:
            data = _expand_shorthand(data, key, fields[key]["shorthand_for"])
    for name, spec in fields.items():
        if "shorthand_for" in spec:
            continue
        if name not in data:
            if partial or spec.get("auto"):
                continue
            value = _default(spec)
        else:
            value = data[name]
        cleaned, error = check_value(spec, value)
        if error is not None:
            errors[name] = error
        else:
            out[name] = cleaned
    return out, errors


def _expand_shorthand(data: Mapping[str, Any], key: str, path: tuple[str, ...]) -> dict[str, Any]:
    """`data` with the shorthand `key`'s value moved to the nested field `path` names (Kong's
    shorthand_fields: `redis_host` -> `redis.host`); the shorthand's value wins."""
    out = dict(data)
    value = out.pop(key)
    target = out
    for part in path[:-1]:
        nested = target.get(part)
        target[part] = dict(nested) if isinstance(nested, Mapping) else {}
        target = target[part]
    target[path[-1]] = value
    return out


def _default(spec: Mapping[str, Any]) -> Any:
    if "default" in spec:
        return copy.deepcopy(spec["default"])
    if spec["type"] == "record":
        return {}  # a record without a default is built from its fields' defaults
    return None


def check_value(spec: Mapping[str, Any], value: Any) -> tuple[Any, Any]:
    """(cleaned value, None) or (None, the error in Kong's shape)."""
    if value is None:
        return (None, REQUIRED) if spec.get("required") else (None, None)
    kind = spec["type"]
    if kind in ("array", "set"):
        return _check_list(spec, value)
    if kind == "map":
        return _check_map(spec, value)
    if kind == "record":
        if not isinstance(value, Mapping):
            return None, _EXPECTED[kind]
        cleaned, errors = validate(spec.get("fields", {}), value)
        return (None, errors) if errors else (cleaned, None)
    if kind == "foreign":
        return _check_foreign(value)
    return _check_scalar(spec, value)


def _check_scalar(spec: Mapping[str, Any], value: Any) -> tuple[Any, Any]:
    kind = spec["type"]
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool)
        or isinstance(value, float) and value.is_integer(),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
    }[kind]
    if not ok:
        return None, _EXPECTED[kind]
    if kind == "integer":
        value = int(value)
        if not _INT64[0] <= value <= _INT64[1]:  # what the database and JSON columns can hold
            return None, f"value should be between {_INT64[0]} and {_INT64[1]}"
    if kind == "number" and not math.isfinite(value):
        return None, "expected a finite number"
    if "one_of" in spec and value not in spec["one_of"]:
        return None, "expected one of: " + ", ".join(_spelled(v) for v in spec["one_of"])
    if "gt" in spec and not value > spec["gt"]:
        return None, f"value must be greater than {spec['gt']}"
    if "between" in spec:
        low, high = spec["between"]
        if not low <= value <= high:
            return None, f"value should be between {low} and {high}"
    if kind == "string":
        return _check_string(spec, value)
    return value, None


def _check_string(spec: Mapping[str, Any], value: str) -> tuple[Any, Any]:
    if len(value) < spec.get("len_min", 1):  # Kong's strings are never empty unless told
        return None, f"length must be at least {spec.get('len_min', 1)}"
    if "len_max" in spec and len(value) > spec["len_max"]:
        return None, f"length must be at most {spec['len_max']}"
    if "\x00" in value:  # PostgreSQL text cannot hold it
        return None, "invalid value: must not contain a NUL character"
    if spec.get("name") and not _NAME.match(value):
        return None, f"invalid value '{value}': it must only contain alphanumeric and '., -, _, ~' characters"
    if spec.get("uuid") and not is_uuid(value):
        return None, "expected a valid UUID"
    starts = spec.get("starts_with")
    if starts and not value.startswith(tuple(starts)):
        return None, spec.get("starts_with_message", "should start with: " + " or ".join(starts))
    if spec.get("header_name") and not _HEADER_NAME.match(value):
        return None, f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    if spec.get("tag") and not _TAG.match(value):
        return None, f"invalid tag '{value}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
    return value, None


def _spelled(value: Any) -> str:
    """A value in a message as Kong spells it: booleans in lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_list(spec: Mapping[str, Any], value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list):
        return None, _EXPECTED[spec["type"]]
    elements = spec.get("elements", {"type": "string"})
    cleaned: list[Any] = []
    errors: list[Any] = []
    seen: set[Any] = set()  # a set's items seen so far (by value: a linear pass, not a quadratic one)
    item_spec = {**elements, "required": True}
    for item in value:
        one, error = check_value(item_spec, item)
        errors.append(error)
        if error is None:
            if spec["type"] == "set":
                marker = orjson.dumps(one, option=orjson.OPT_SORT_KEYS) if isinstance(one, dict | list) else one
                if marker in seen:
                    continue
                seen.add(marker)
            cleaned.append(one)
    if any(e is not None for e in errors):
        return None, errors
    if "len_min" in spec and len(cleaned) < spec["len_min"]:
        return None, f"length must be at least {spec['len_min']}"
    return cleaned, None


def _check_map(spec: Mapping[str, Any], value: Any) -> tuple[Any, Any]:
    if not isinstance(value, Mapping):
        return None, _EXPECTED["map"]
    values = spec.get("values")
    cleaned: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for key, item in value.items():
        if values is None:
            cleaned[key] = item
            continue
        one, error = check_value({**values, "required": True}, item)
        if error is not None:
            errors[key] = error
        else:
            cleaned[key] = one
    return (None, errors) if errors else (cleaned, None)


def _check_foreign(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, Mapping):
        return None, _EXPECTED["foreign"]
    unknown = {key: UNKNOWN for key in value if key != "id"}
    if unknown:
        return None, unknown
    if not is_uuid(value.get("id")):
        return None, {"id": "expected a valid UUID" if value.get("id") is not None else REQUIRED}
    return {"id": value["id"]}, None


def infer_types(data: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
    """Type a decoded form by the fields it is meant for; unknown keys are left for validation.

    Form values are strings: "true"/"false" become booleans, numbers become integers or numbers
    for those fields, a single value for an array field becomes a one-element array, and "" is null.
    """
    return {key: _infer(fields[key], value) if key in fields else value for key, value in data.items()}


def _infer(spec: Mapping[str, Any], value: Any) -> Any:
    if value == "":
        return None
    kind = spec["type"]
    if kind in ("array", "set"):
        items = value if isinstance(value, list) else [value]
        elements = spec.get("elements", {"type": "string"})
        return [_infer(elements, item) for item in items]
    if kind == "record" and isinstance(value, Mapping):
        return infer_types(value, spec.get("fields", {}))
    if kind == "map" and isinstance(value, Mapping) and "values" in spec:
        return {k: _infer(spec["values"], v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    if kind in ("integer", "number"):
        try:
            return int(value)
        except ValueError:
            pass
        if kind == "number":
            try:
                return float(value)
            except ValueError:
                pass
    return value
