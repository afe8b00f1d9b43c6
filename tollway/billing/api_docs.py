"""Pieces of the OpenAPI entries billing's own routes describe themselves with (api.py's OPENAPI)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
ERROR = {"$ref": "#/components/schemas/Error"}


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


CONSUMER = path_param("parent", "id or username of the consumer")
PLAN = path_param("parent", "id or name of the plan")


def errors(**described: str) -> dict[str, Any]:
    """Error answers in Kong's shape: errors(e400="...", e404="...")."""
    return {name[1:]: {"description": text, "content": {JSON: {"schema": ERROR}}} for name, text in described.items()}


def ok(description: str, schema: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": description, "content": {JSON: {"schema": schema}}}}


def body(schema: dict[str, Any], *, required: bool = False, form: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON or url-encoded body; `form` when a form cannot say all that JSON can (nested maps)."""
    return {"required": required, "content": {JSON: {"schema": schema},
                                              "application/x-www-form-urlencoded": {"schema": form or schema}}}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema
