"""Plugins: each one a folder found by its name (`key-auth` lives in `tollway/plugins/key_auth/`).

A plugin folder holds:
  schema.py      SCHEMA: plain data (name, priority, config fields with defaults and descriptions)
  handler.py     Handler: a subclass of tollway.plugins.base.Handler, one method per phase
  daos.py        optional: ENTITIES, the plugin's own Admin API entities
  api.py         optional: routes(ctx) -> Starlette routes added to the Admin API
  migrations/    optional: numbered migration modules, run by `tollway migrations up`

The proxy imports only schema.py and handler.py, so a worker never loads a database driver.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from tollway.config import BUNDLED_PLUGINS

__all__ = ["BUNDLED_PLUGINS", "module_name", "schema", "load_module"]


def module_name(name: str) -> str:
    """'key-auth' -> 'tollway.plugins.key_auth'."""
    if name not in BUNDLED_PLUGINS:
        raise KeyError(name)
    return "tollway.plugins." + name.replace("-", "_")


def load_module(name: str, part: str) -> ModuleType | None:
    """Import one part ('schema', 'handler', 'daos', 'api', 'migrations') of a plugin, or None."""
    try:
        return importlib.import_module(module_name(name) + "." + part)
    except ModuleNotFoundError as exc:
        if exc.name == module_name(name) + "." + part:
            return None
        raise


def schema(name: str) -> dict[str, Any]:
    module = load_module(name, "schema")
    assert module is not None, name
    return module.SCHEMA  # type: ignore[no-any-return]
