"""The OpenAPI 3 document of the Admin API, generated from its routes and entity schemas.

Every route of the app is described: generated entity routes from their `RouteDoc` (fields become
JSON Schemas, for JSON, url-encoded and multipart bodies), the information routes from INFO below,
and plugins' own routes (`api.py`) from an `OPENAPI` dict in that module when it has one, or else
as a GET answering JSON. Error answers use Kong's shapes: `{"message"}`, and for database errors
`{"code", "name", "message", "fields"}`. tests/admin/test_openapi.py keeps the document true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import BigInteger, Integer
from starlette.routing import BaseRoute, Route

from tollway import __version__
from tollway.admin.endpoints import UNIQUE_FILTERS, ApiRoute, RouteDoc
from tollway.admin.guard import HEADER
from tollway.admin.pagination import MAX_SIZE, MAX_TAGS, TAGS_PATTERN
from tollway.config import Settings
from tollway.plugins import registry
from tollway.store.entities.plugins import SCOPES
from tollway.store.entities.schema import EntitySchema
from tollway.store.entities.services import URL_DOC

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
ERROR = {"$ref": "#/components/schemas/Error"}
SCALARS = ("string", "integer", "number", "boolean")
UUID = {"type": "string", "format": "uuid"}

# What each status means for one operation, and the error shape it answers with.
STATUS_TEXT = {
    400: "invalid input: a schema, primary key, foreign key or offset error (Kong's database error shape)",
    401: "missing or wrong admin token",
    404: "not found",
    405: "the method is not allowed here",
    409: "a unique field is taken",
    415: "the body is neither JSON, url-encoded nor multipart",
    503: "the database is unreachable",
}


def _error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": STATUS_TEXT[s], "content": {JSON: {"schema": ERROR}}} for s in statuses}


def field_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One field (entity or plugin config) as an OpenAPI 3.0 schema."""
    kind = spec["type"]
    out: dict[str, Any]
    if kind in ("string", "boolean", "integer", "number"):
        out = {"type": kind}
        if "one_of" in spec:
            out["enum"] = list(spec["one_of"])
        if "between" in spec:
            out["minimum"], out["maximum"] = spec["between"]
        if "gt" in spec:
            out["minimum"], out["exclusiveMinimum"] = spec["gt"], True
        if kind == "string":
            out["minLength"] = spec.get("len_min", 1)
            if spec.get("uuid"):
                out["format"] = "uuid"
            if spec.get("starts_with"):
                out["pattern"] = ("^(" + "|".join(prefix.replace("/", "\\/") for prefix in spec["starts_with"])
                                  + ")[^\\u0000]*$")
            if spec.get("name"):
                out["pattern"] = r"^[A-Za-z0-9_.\-~]+$"
            if spec.get("header_name"):
                out["pattern"] = r"^[A-Za-z0-9_-]+$"
            if spec.get("tag"):
                out["pattern"] = r"^[^\x00-\x1f\x7f,/]+$"  # printable, no ',' or '/' (validation.py)
            out.setdefault("pattern", "^[^\u0000]*$")  # PostgreSQL text cannot hold a NUL
        if kind == "integer" and spec.get("timestamp"):
            out["description"] = "epoch seconds"
    elif kind in ("array", "set"):
        out = {"type": "array", "items": field_schema({**spec.get("elements", {"type": "string"}), "required": True})}
        if kind == "set":
            out["description"] = "a set: duplicates are dropped"
        if "len_min" in spec:
            out["minItems"] = spec["len_min"]
    elif kind == "map":
        out = {"type": "object"}
        if "values" in spec:
            out["additionalProperties"] = field_schema({**spec["values"], "required": True})
    elif kind == "record":
        fields = spec.get("fields", {})
        out = {"type": "object", "properties": {name: field_schema(sub) for name, sub in fields.items()},
               "additionalProperties": False}
        needed = [name for name, sub in fields.items() if sub.get("required") and sub.get("default") is None]
        if needed:
            out["required"] = needed
    elif kind == "foreign":
        out = {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}},
               "required": ["id"], "additionalProperties": False,
               "description": f"a reference to one of {spec['reference']} by id"}
    else:
        raise ValueError(f"unknown field type {kind!r}")
    if "description" in spec:
        out["description"] = spec["description"]
    out.update(spec.get("documented", {}))
    if "default" in spec and spec["default"] is not None:
        out["default"] = list(spec["default"]) if isinstance(spec["default"], tuple) else spec["default"]
    if not spec.get("required"):
        out["nullable"] = True
    return out


def _column_bounds(schema: EntitySchema, props: dict[str, Any]) -> None:
    """An integer stored in a 32-bit column is bounded by it (crud's _column_limits)."""
    for name, prop in props.items():
        column = schema.table.c.get(name)
        if prop.get("type") == "integer" and column is not None and isinstance(column.type, Integer) \
                and not isinstance(column.type, BigInteger):
            prop.setdefault("minimum", -(1 << 31))
            prop.setdefault("maximum", (1 << 31) - 1)


def entity_schema(schema: EntitySchema) -> dict[str, Any]:
    """An entity as the Admin API answers it: every field present."""
    props = {name: field_schema(spec) for name, spec in schema.fields.items()}
    for name in schema.secrets:
        props[name] = {**props[name], "description": "shown in full only in the answer that sets or generates "
                       "it; later answers show its stored form (`sha256:<hex>` when hashed)"}
    return {"type": "object", "properties": props, "required": list(props)}


def _input_properties(schema: EntitySchema) -> dict[str, Any]:
    # what the server sets (times, a subscription's timeline) is not input; an id may be chosen
    props = {name: field_schema(spec) for name, spec in schema.fields.items()
             if name not in ("created_at", "updated_at") and (name == "id" or not spec.get("auto"))}
    _column_bounds(schema, props)
    if schema.prepare is not None and schema.name == "services":
        props["url"] = {"type": "string", "description": "shorthand for protocol, host, port and path", **URL_DOC}
    if schema.name == "plugins":
        enabled = plugins_enabled(schema)
        if enabled:
            props["name"] = {**props["name"], "enum": enabled}
        props["config"] = {"type": "object", "description": "the plugin's configuration: see "
                           "GET /schemas/plugins/{name}"}
    return props


def plugins_enabled(schema: EntitySchema) -> list[str]:
    return [name for name in registry.installed() if not schema.resolve_fields({"name": name})[1]]


def entity_input(schema: EntitySchema) -> dict[str, Any]:
    """A JSON request body: the fields a client may send. None is listed as required: which are
    depends on the operation (a PATCH needs none, a nested POST has its parent set)."""
    return {"type": "object", "properties": _input_properties(schema), "additionalProperties": False}


def form_input(schema: EntitySchema) -> dict[str, Any]:
    """A form body: scalars and arrays of scalars by name, a foreign key as `{field}.id`
    (Kong's form keys); maps and records are sent as JSON or as `config.x` keys, not listed."""
    props: dict[str, Any] = {}
    for name, spec in _input_properties(schema).items():
        # a form's empty value is null (validation.infer_types): "" where null may be
        empty = [{"type": "string", "maxLength": 0}] if spec.get("nullable") else []
        if spec.get("type") == "object" and "properties" in spec and "id" in spec["properties"]:
            props[name + ".id"] = UUID  # "" is not null here: an id is expected
        elif spec.get("type") in SCALARS or spec.get("type") == "array" and spec["items"].get("type") in SCALARS:
            value = {k: v for k, v in spec.items() if k != "nullable"}
            props[name] = {"anyOf": [value, *empty]} if empty else value
    return {"type": "object", "properties": props, "additionalProperties": False}


def _component(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _required(schema: EntitySchema, given: Iterable[str]) -> list[str]:
    """The fields a body written whole (POST, PUT) must hold: required ones the server does not fill
    (no default, not generated, not set from the path: `given`)."""
    return [name for name, spec in schema.fields.items()
            if spec.get("required") and spec.get("default") is None and not spec.get("auto")
            and spec["type"] != "record" and name not in schema.generated and name not in given
            and not (name == "host" and schema.name == "services")]  # or `url`, in SHORTHAND below


# The services' `url` stands for protocol, host, port and path: one of host and url is needed.
SHORTHAND = {"services": {"anyOf": [{"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
                                    for name in ("host", "url")]}}


NULL = {"nullable": True, "enum": [None]}


def _empty(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Absent, null or empty, as a plugin config check counts a field (tollway/store/entities/plugins.py)."""
    bound = {"array": "maxItems", "set": "maxItems", "map": "maxProperties", "string": "maxLength"}.get(spec["type"])
    return {"nullable": True, bound: 0} if bound else NULL


def _filled(spec: Mapping[str, Any]) -> dict[str, Any]:
    bound = {"array": "minItems", "set": "minItems", "map": "minProperties", "string": "minLength"}.get(spec["type"])
    return {bound: 1, "not": NULL} if bound else {"not": NULL}


def _config_rules(fields: Mapping[str, Any], checks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A plugin's config checks: at_least_one_of (one field filled) and only_one_of (unless one of
    its fields is absent or null, exactly one filled)."""
    rules: list[dict[str, Any]] = []
    for check in checks:
        for kind, names in check.items():
            if kind == "conditional":
                rules.append(_conditional(names))
                continue
            one_filled = [{"required": [name], "properties": {
                name: _filled(fields[name]), **({other: _empty(fields[other]) for other in names if other != name}
                                                if kind == "only_one_of" else {})}} for name in names]
            if kind == "only_one_of":
                one_filled += [{"properties": {name: NULL}} for name in names]
                one_filled += [{"not": {"required": [name]}} for name in names]
            rules.append({"anyOf": one_filled})
    return rules


def _conditional(check: Mapping[str, Any]) -> dict[str, Any]:
    """Kong's conditional check: when `if_field` equals `if_eq`, `then_field` (a dotted path into
    records) must be filled. An absent `if_field` takes its default, which never triggers it here."""
    *records, last = check["then_field"].split(".")
    filled: dict[str, Any] = {"required": [last], "properties": {last: {"not": NULL}}}
    for record in reversed(records):
        filled = {"required": [record], "properties": {record: filled}}
    if_field = check["if_field"]
    return {"anyOf": [{"not": {"required": [if_field]}},
                      {"properties": {if_field: {"not": {"enum": [check["if_eq"]]}}}}, filled]}


def _plugin_rules(schema: EntitySchema, given: Iterable[str]) -> dict[str, Any]:
    """One branch per enabled plugin: its name, its config's fields and checks, the scopes it refuses
    null. A scope the path sets (/consumers/{c}/plugins) rules out the plugins it does not allow."""
    branches = []
    for name in plugins_enabled(schema):
        plugin = registry.schema(name)
        scopes = plugin.get("scopes", ("global", *SCOPES))
        if any(scope not in scopes for scope in given if scope in SCOPES):
            continue
        config = field_schema({"type": "record", "fields": plugin["config"], "required": True})
        rules = _config_rules(plugin["config"], plugin.get("checks", ()))
        branch: dict[str, Any] = {"properties": {
            "name": {"enum": [name]}, "config": {"allOf": [config, *rules]} if rules else config,
            **{scope: NULL for scope in SCOPES if scope not in scopes}}}
        if rules:  # a config must be given to meet them
            branch["required"] = ["config"]
        branches.append(branch)
    return {"anyOf": branches}


def _whole(schema: EntitySchema, ref: dict[str, str], required: list[str],
           given: Iterable[str] = ()) -> dict[str, Any]:
    """`ref` with what a body written whole must also meet: its required fields and cross-field rules."""
    # a choice the path already made (PUT /consumers/{username}: a username) is met
    rules: list[Any] = [rule for rule in schema.documented_checks if not any(
        branch.get("required") and set(branch["required"]) <= set(given) for branch in rule.get("anyOf", ()))]
    if schema.name in SHORTHAND:
        rules.append(SHORTHAND[schema.name])
    if schema.name == "plugins":
        rules.append(_plugin_rules(schema, given))
    if required:
        rules.append({"required": required})
    return {"allOf": [ref, *rules]} if rules else ref


def _as_form(rule: Any, foreign: Mapping[str, str]) -> Any:
    """A rule for a form body, where an empty value is null (wherever null is named, "" is too)
    and a foreign key is `{field}.id`."""
    if isinstance(rule, dict):
        if rule.get("enum") == [None]:
            return {**rule, "enum": [None, ""]}
        out = {key: _as_form(value, foreign) for key, value in rule.items()}
        if isinstance(rule.get("properties"), dict):
            # a foreign key that must be null is left out of a form (`{field}.id=` is not null but "")
            absent = [name + ".id" for name, value in rule["properties"].items()
                      if name in foreign and value.get("enum") == [None]]
            out["properties"] = {name + ".id" if name in foreign else name: _as_form(value, foreign)
                                 for name, value in rule["properties"].items() if name + ".id" not in absent}
            if absent:
                out = {"allOf": [out, *({"not": {"required": [key]}} for key in absent)]}
        return out
    if isinstance(rule, list):
        return [_as_form(item, foreign) for item in rule]
    return rule


def _body(schema: EntitySchema, given: Iterable[str] | None = None) -> dict[str, Any]:
    """A request body; `given` (the fields the path sets) when it is written whole, None for a PATCH."""
    name = _component(schema.name)
    json_schema, form = _ref(name + "Input"), _ref(name + "Form")
    if given is not None:
        required = _required(schema, given)
        foreign = schema.foreign_fields()
        json_schema = _whole(schema, json_schema, required, given)
        form = _as_form(_whole(schema, form, [field + ".id" if field in foreign else field for field in required],
                               given), foreign)
    # a body written whole with fields it must hold cannot be left out
    return {"required": "allOf" in json_schema, "content": {
        JSON: {"schema": json_schema},
        FORM: {"schema": form, "encoding": {}},
        MULTIPART: {"schema": form},
    }}


def _ok(schema: EntitySchema, status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": "the entity", "content": {JSON: {"schema": _ref(_component(schema.name))}}}}


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string", "minLength": 1}}


def _ident(schema: EntitySchema, method: str = "GET", scoped: bool = False) -> dict[str, Any]:
    """What names one entity in a path: its id, or a value of its endpoint key. A DELETE takes any
    string (what names nothing is gone already: 204); a PUT by key is documented by key alone, as
    the key then fills the body's field (by id, the body must hold what the key would have given)."""
    if method == "DELETE":
        return {"type": "string", "minLength": 1}
    if schema.endpoint_key is None or scoped:
        return UUID
    key = field_schema({**schema.fields[schema.endpoint_key], "required": True})
    key.pop("description", None)
    return key if method == "PUT" else {"anyOf": [UUID, key]}


def _key_name(schema: EntitySchema) -> str:
    return f"id or {schema.endpoint_key}" if schema.endpoint_key else "id"


def _offset(kind: str) -> dict[str, Any]:
    """An opaque token: valid only as a previous page of the same listing gave it (else 400 invalid
    offset, as Kong's); `format` names which listing's tokens it is."""
    return {"name": "offset", "in": "query", "required": False,
            "description": "the `offset` of the previous page, as given (an opaque token); empty: none",
            "schema": {"anyOf": [{"type": "string", "format": kind}, {"type": "string", "maxLength": 0}]}}


SIZE = {"name": "size", "in": "query", "required": False, "description": "entities per page (default 100)",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE}}
TAGS = {"name": "tags", "in": "query", "required": False,
        "description": f"entities with every tag of a,b or with any tag of a/b (at most {MAX_TAGS} tags)",
        "schema": {"type": "string", "pattern": TAGS_PATTERN}}
LIST_PARAMS = [SIZE, _offset("entities-offset"), TAGS]
NESTED_LIST_PARAMS = LIST_PARAMS[:2]  # under a parent, tags are not a filter (Kong's)
TAG_LIST_PARAMS = [SIZE, _offset("tags-offset")]


def _unique_filter(entity: str) -> dict[str, Any]:
    field = UNIQUE_FILTERS[entity]
    return {"name": field, "in": "query", "required": False,
            "description": f"only the entity with this {field} (a page of at most one; paging and tags ignored)",
            "schema": {"type": "string", "minLength": 1}}


def _operations(doc: RouteDoc, methods: Iterable[str]) -> dict[str, Any]:
    schema, parent = doc.schema, doc.parent
    params: list[dict[str, Any]] = []
    if parent is not None:
        params.append(_path_param("parent", f"{_key_name(parent)} of the parent ({parent.name})", _ident(parent)))
    if doc.kind == "referenced":
        assert doc.via is not None
        params.append(_path_param("ident", f"{_key_name(doc.via)} of the {doc.via.name} entity whose "
                                  f"reference is followed", _ident(doc.via)))
    ident_of = ({method: _path_param("ident", f"{_key_name(schema)} ({schema.name})",
                                     _ident(schema, method, scoped=parent is None and bool(schema.endpoint_key_scope)))
                 for method in methods} if doc.kind == "entity" else {})
    name = _component(schema.name)
    parent_field = tuple(nesting.field for nesting in schema.nested
                         if parent is not None and schema.fields[nesting.field]["reference"] == parent.name)
    nested = (404,) if parent is not None or doc.kind == "referenced" else ()
    # a key unique only under a parent (an ACL's group) names nothing at the top level: 404
    scoped = (404,) if parent is None and schema.endpoint_key_scope else ()
    ops: dict[str, Any] = {}
    op: dict[str, Any]
    for method in methods:
        if doc.kind == "collection" and method == "GET":
            filters = [_unique_filter(schema.name)] if schema.name in UNIQUE_FILTERS and parent is None else []
            listing = NESTED_LIST_PARAMS if parent is not None else LIST_PARAMS
            op = {"summary": f"List {schema.name}", "parameters": listing + filters,
                  "responses": {"200": {"description": "a page", "content": {JSON: {"schema": _ref(name + "Page")}}},
                                **_error_responses(400, *nested)}}
        elif doc.kind == "collection":
            op = {"summary": f"Create one of {schema.name}", "requestBody": _body(schema, parent_field),
                  "responses": {**_ok(schema, 201), **_error_responses(400, 409, 415, *nested)}}
        elif method == "GET":
            op = {"summary": f"Read one of {schema.name}", "responses": {**_ok(schema), **_error_responses(404)}}
        elif method == "DELETE" and doc.kind == "referenced":
            op = {"summary": f"Refused (405), as Kong's: unlink the {schema.name} entity with a PATCH instead",
                  "responses": _error_responses(404, 405)}
        elif method == "DELETE" and parent is not None:
            op = {"summary": f"Delete one of {schema.name} under its parent (404 when it is not there)",
                  "responses": {"204": {"description": "deleted"}, **_error_responses(400, 404)}}
        elif method == "DELETE":
            op = {"summary": f"Delete one of {schema.name} (an absent one is no error)",
                  "responses": {"204": {"description": "deleted, or was not there"}, **_error_responses(400)}}
        elif method == "PATCH":
            op = {"summary": f"Update one of {schema.name}", "requestBody": _body(schema),
                  "responses": {**_ok(schema), **_error_responses(400, 404, 409, 415)}}
        else:
            # {ident} sets the endpoint key (an ACL's group only under its consumer)
            keyed = (schema.endpoint_key,) if doc.kind == "entity" and schema.endpoint_key and not (
                parent is None and schema.endpoint_key_scope) else ()
            op = {"summary": f"Create or replace one of {schema.name} (upsert)",
                  "requestBody": _body(schema, (*parent_field, *keyed)),
                  "responses": {**_ok(schema), **_error_responses(400, 409, 415, *nested, *scoped)}}
        op["operationId"] = f"{method.lower()}-{doc.kind}-{schema.name}" + (
            f"-of-{parent.name}" if parent else "") + (f"-via-{doc.via.name}" if doc.via else "")
        op["tags"] = [schema.name]
        own = params + ([ident_of[method]] if method in ident_of else [])
        if own:
            op["parameters"] = own + op.get("parameters", [])
        ops[method.lower()] = op
    return ops


def _object(description: str, properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    if properties:
        schema["properties"] = dict(properties)
        schema["required"] = list(properties)
    return {"200": {"description": description, "content": {JSON: {"schema": schema}}}}


# The information routes (tollway/admin/info.py) and this document.
INFO: dict[str, dict[str, Any]] = {
    "/": {"summary": "Node information: version, plugins, configuration",
          "responses": _object("node information", {"version": {"type": "string"}, "node_id": {"type": "string"},
                                                    "plugins": {"type": "object"},
                                                    "configuration": {"type": "object"}})},
    "/status": {"summary": "Health: database reachability and server counters",
                "responses": _object("status", {"database": {"type": "object"}, "server": {"type": "object"}})},
    "/plugins/enabled": {"summary": "Plugins enabled on this node",
                         "responses": _object("names", {"enabled_plugins": {"type": "array",
                                                                            "items": {"type": "string"}}})},
    "/schemas/plugins/{name}": {
        "summary": "A plugin's schema, Kong's format",
        "parameters": [_path_param("name", "the plugin name")],
        "responses": {**_object("the schema", {"fields": {"type": "array"}}), **_error_responses(404)}},
    "/tags": {"summary": "Every tag of every entity, as {tag, entity_name, entity_id}, in pages",
              "parameters": TAG_LIST_PARAMS,
              "responses": {**_object("a page", {"data": {"type": "array"}, "next": {"type": "string",
                                                                                      "nullable": True}}),
                            **_error_responses(400)}},
    "/tags/{tag}": {"summary": "The entities with one tag, in pages",
                    "parameters": [_path_param("tag", "the tag (U+FFFD, a byte not UTF-8, is refused)",
                                               {"type": "string", "pattern": "^[^\ufffd]+$"}), *TAG_LIST_PARAMS],
                    "responses": {**_object("a page", {"data": {"type": "array"},
                                                       "next": {"type": "string", "nullable": True}}),
                                  **_error_responses(400)}},
    "/endpoints": {"summary": "Every path of the Admin API",
                   "responses": _object("paths", {"data": {"type": "array", "items": {"type": "string"}}})},
    "/openapi.json": {"summary": "This document", "responses": _object("an OpenAPI 3 document")},
}


def _plugin_route_doc(route: Route, settings: Settings) -> dict[str, Any]:
    """A plugin's own route: its api.py OPENAPI entry when it has one, else a plain JSON GET."""
    for _owner, module in registry.parts(settings.enabled_plugins, "api"):
        documented = getattr(module, "OPENAPI", None)
        if isinstance(documented, Mapping) and route.path.rstrip("/") in documented:
            return dict(documented[route.path.rstrip("/")])
    ops = {}
    for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
        ops[method.lower()] = {"summary": f"{method} {route.path} (a plugin's endpoint)",
                               "responses": {"200": {"description": "JSON", "content": {JSON: {"schema": {}}}},
                                             **_error_responses(400)}}
    return ops


def build(settings: Settings, routes: Iterable[BaseRoute], entities: Iterable[EntitySchema]) -> dict[str, Any]:
    """The document for this app's routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue  # web pages (the dashboard's) are not part of the JSON API
        path = route.path.rstrip("/") or "/"
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        if isinstance(route, ApiRoute):
            ops = _operations(route.doc, methods)
        elif path in INFO:
            ops = {method.lower(): dict(INFO[path]) for method in methods}
            for method, op in ops.items():
                op.setdefault("operationId", f"{method}-{path.strip('/').replace('/', '-') or 'root'}")
                op.setdefault("tags", ["information"])
        else:
            ops = _plugin_route_doc(route, settings)
        for op in ops.values():
            op["responses"] = {**op["responses"], **_error_responses(503)}
            if settings.admin_token:
                op["responses"] = {**op["responses"], **_error_responses(401)}
        paths.setdefault(path, {}).update(ops)
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["message"], "description": "Kong's error shape",
                  "properties": {"message": {"type": "string"}, "code": {"type": "integer"},
                                 "name": {"type": "string"}, "fields": {}}},
    }
    for schema in entities:
        name = _component(schema.name)
        schemas[name] = entity_schema(schema)
        schemas[name + "Input"] = entity_input(schema)
        schemas[name + "Form"] = form_input(schema)
        schemas[name + "Page"] = {
            "type": "object", "required": ["data", "next"],
            "properties": {"data": {"type": "array", "items": _ref(name)},
                           "next": {"type": "string", "nullable": True,
                                    "description": "the path of the next page, or null"},
                           "offset": {"type": "string"}}}
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "Tollway Admin API", "version": __version__,
                 "description": "Kong-compatible Admin API. Paths answer with or without a trailing slash. "
                                "Bodies may be JSON, url-encoded or multipart forms (form keys nest as Kong's: "
                                "`service.id=`, `paths[]=`, `config.key_names[1]=`)."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if settings.admin_token:
        document["components"]["securitySchemes"] = {
            "adminToken": {"type": "apiKey", "in": "header", "name": HEADER,
                           "description": "the admin_token setting; Kong-Admin-Token is accepted too"}}
        document["security"] = [{"adminToken": []}]
    return document
