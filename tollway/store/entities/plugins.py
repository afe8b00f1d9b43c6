"""Plugins: a plugin's configuration, global or scoped to a service, route and/or consumer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway import plugins
from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Errors, Fields, Nesting, common_fields

SCOPES = ("service", "route", "consumer")
PROTOCOLS = ("grpc", "grpcs", "http", "https")

BASE_FIELDS: dict[str, dict[str, Any]] = {
    **common_fields(),
    "name": {"type": "string", "required": True},
    "service": {"type": "foreign", "reference": "services"},
    "route": {"type": "foreign", "reference": "routes"},
    "consumer": {"type": "foreign", "reference": "consumers"},
    # Until the name says which plugin this is, config is any map.
    "config": {"type": "map"},
    "protocols": {"type": "set", "elements": {"type": "string", "one_of": PROTOCOLS},
                  "default": list(PROTOCOLS), "required": True, "len_min": 1},
    "enabled": {"type": "boolean", "default": True, "required": True},
}


def config_field(name: str) -> dict[str, Any]:
    """The `config` field of one plugin: a record of its schema's config fields, and of its
    `shorthand_fields` (Kong's: a flat name standing for a nested field, `redis_host` for
    `redis.host`), each typed as the field it stands for."""
    schema = plugins.schema(name)
    fields: dict[str, Any] = dict(schema["config"])
    for shorthand, path in (schema.get("shorthand_fields") or {}).items():
        target: Any = {"fields": fields}
        for part in path:
            target = target["fields"][part]
        fields[shorthand] = {**target, "shorthand_for": tuple(path)}
        fields[shorthand].pop("default", None)
    return {"type": "record", "required": True, "fields": fields}


def _scope_errors(entity: Mapping[str, Any]) -> Errors:
    scopes = plugins.schema(entity["name"]).get("scopes", ("global",) + SCOPES)
    return {scope: "value must be null" for scope in SCOPES if entity.get(scope) and scope not in scopes}


def _non_empty(value: Any) -> bool:
    return value is not None and value != [] and value != "" and value != {}


def _config_checks(entity: Mapping[str, Any]) -> Errors:
    """The checks a plugin's SCHEMA lists in `checks`, on fields of its config (Kong's
    entity_checks): `{"at_least_one_of": [...]}`, `{"only_one_of": [...]}` (run when every
    field it names is set, as Kong's) and `{"conditional": {"if_field", "if_eq", "then_field"}}`
    (then_field, a dotted path, is required when if_field equals if_eq). When they all pass, the
    schema's `custom_validator(config)` (Kong's) may return a message about the whole config or
    a dict of messages by config field."""
    schema = plugins.schema(entity["name"])
    config = entity.get("config") or {}
    found: list[str] = []
    fields: Errors = {}
    for check in schema.get("checks", ()):
        for kind, names in check.items():
            if kind == "conditional":
                _conditional(config, names, found, fields)
                continue
            listed = ", ".join(f"'config.{name}'" for name in names)
            filled = sum(_non_empty(config.get(name)) for name in names)
            if kind == "at_least_one_of" and filled == 0:
                found.append(f"at least one of these fields must be non-empty: {listed}")
            elif kind == "only_one_of" and filled != 1 and all(config.get(name) is not None for name in names):
                found.append(f"exactly one of these fields must be non-empty: {listed}")
    errors: Errors = {"@entity": found} if found else {}
    if fields:
        errors["config"] = fields
    validator = schema.get("custom_validator")
    if not errors and validator is not None:
        problem = validator(config)
        if problem:
            errors["config"] = problem
    return errors


def _conditional(config: Mapping[str, Any], check: Mapping[str, Any], found: list[str], fields: Errors) -> None:
    """Kong's `conditional` check with `then_match = { required = true }`."""
    if config.get(check["if_field"]) != check["if_eq"]:
        return
    *parents, leaf = check["then_field"].split(".")
    value: Any = config
    for name in parents:
        value = value.get(name) if isinstance(value, Mapping) else None
    if isinstance(value, Mapping) and value.get(leaf) is not None:
        return
    target = fields
    for name in parents:
        target = target.setdefault(name, {})
    target[leaf] = "required field missing"
    message = f"failed conditional validation given value of field 'config.{check['if_field']}'"
    if message not in found:
        found.append(message)


def _plugin_checks(entity: Mapping[str, Any]) -> Errors:
    return {**_scope_errors(entity), **_config_checks(entity)}


def cache_key(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The column that makes (name, service, route, consumer) unique, NULLs included."""
    ids = [(entity.get(scope) or {}).get("id") or "" for scope in ("route", "service", "consumer")]
    return {"cache_key": ":".join(["plugins", entity["name"], *ids])}


def unique_key(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": entity["name"], **{scope: entity.get(scope) for scope in SCOPES}}


def plugins_entity(enabled: tuple[str, ...]) -> EntitySchema:
    """The plugins entity for this configuration: only enabled plugins may be configured."""

    def fields_for(data: Mapping[str, Any]) -> tuple[Fields, Errors]:
        name = data.get("name")
        if not isinstance(name, str) or not name:
            return BASE_FIELDS, {}
        if name not in enabled:
            return BASE_FIELDS, {
                "name": f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"}
        return {**BASE_FIELDS, "config": config_field(name)}, {}

    return EntitySchema(
        name="plugins",
        path="plugins",
        table=tables.plugins,
        fields=BASE_FIELDS,
        nested=tuple(Nesting(scope, "plugins") for scope in SCOPES),
        fields_for=fields_for,
        checks=(_plugin_checks,),
        computed=cache_key,
        computed_unique=unique_key,
    )
