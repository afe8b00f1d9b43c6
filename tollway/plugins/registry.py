"""Which plugins exist, and where each one's parts live.

A plugin is a package found by its name. The bundled ones are the subpackages of tollway.plugins
that hold a schema.py (`key-auth` is tollway/plugins/key_auth/). An installed Python package adds
one by declaring an entry point in the group `tollway.plugins`, from the plugin's name to its
package:

    [project.entry-points."tollway.plugins"]
    hello-header = "hello_header"

A plugin's package holds:
  schema.py      SCHEMA: plain data (name, priority, scopes, config fields with defaults)
  handler.py     Handler: a subclass of tollway.plugins.base.Handler, one method per phase
  daos.py        optional: its own entities, ENTITIES or entities(settings)
  api.py         optional: routes(ctx) -> its Admin API routes, and OPENAPI describing them
  status_api.py  optional: routes(ctx) -> its read-only routes on the status listener (status_listen)
  services.py    optional: services(ctx) -> node services the master runs (tollway.plugins.base.NodeService)
  migrations/    optional: numbered migration modules, run by `tollway migrations up`

Workers import only schema.py and handler.py, so a worker never loads a database driver. Nothing
here imports a plugin until a part of it is asked for; this module imports nothing of Tollway
but its errors, so that settings can check plugin names against it.

The core's own subsystems (CORE_COMPONENTS: the store, the usage ledger, billing) bring their
migrations, entities (daos.py), Admin API routes (api.py) and node services (services.py) the
same way, and are always enabled: `parts(enabled, part)` lists a part of each, core first.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from tollway.errors import ConfigError

__all__ = ["CORE_COMPONENTS", "ENTRY_POINT_GROUP", "PARTS", "bundled", "check_installed", "installed",
           "load_module", "package_of", "parts", "schema"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tollway.plugins"
PARTS = ("schema", "handler", "daos", "api", "status_api", "services", "migrations")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Owner -> package of the core's subsystems, in the order their parts come (and migrations run).
CORE_COMPONENTS = {"core": "tollway.store", "metering": "tollway.metering", "billing": "tollway.billing"}


@functools.cache
def bundled() -> tuple[str, ...]:
    """The names of the plugins that ship with Tollway, in the order they run (Kong's: highest
    priority first)."""
    here = Path(__file__).parent
    names = [info.name for info in pkgutil.iter_modules([str(here)])
             if info.ispkg and (here / info.name / "schema.py").exists()]
    priorities = {name: importlib.import_module(f"{__package__}.{name}.schema").SCHEMA["priority"] for name in names}
    return tuple(name.replace("_", "-") for name in sorted(names, key=lambda name: (-priorities[name], name)))


@functools.cache
def installed() -> dict[str, str]:
    """Every plugin this Python can load: name -> package, the bundled ones first."""
    found = {name: "tollway.plugins." + name.replace("-", "_") for name in bundled()}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not NAME.match(entry.name):
            log.warning("ignoring plugin entry point %r of %s: not a plugin name", entry.name, entry.value)
        elif entry.name in found:
            log.warning("ignoring plugin entry point %r (%s): a bundled plugin has that name", entry.name, entry.value)
        else:
            found[entry.name] = entry.value
    return found


def package_of(name: str) -> str:
    """'key-auth' -> 'tollway.plugins.key_auth'; KeyError for a plugin that is not installed."""
    return installed()[name]


def check_installed(names: tuple[str, ...]) -> None:
    """ConfigError naming the first enabled plugin that is not installed."""
    known = installed()
    for name in names:
        if name not in known:
            raise ConfigError(f"plugin '{name}' is not installed (installed: {', '.join(sorted(known))})")


def load_module(name: str, part: str) -> ModuleType | None:
    """Import one part (PARTS) of a plugin, or None when the plugin has no such part."""
    return _load(package_of(name), part)


def parts(enabled: tuple[str, ...], part: str) -> list[tuple[str, ModuleType]]:
    """(owner, module) for each core component, then each enabled plugin, that has this part."""
    found = []
    owners = [*CORE_COMPONENTS.items(), *((name, package_of(name)) for name in enabled)]
    for owner, package in owners:
        module = _load(package, part)
        if module is not None:
            found.append((owner, module))
    return found


def _load(package: str, part: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{package}.{part}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"{package}.{part}", package):
            return None
        raise


def schema(name: str) -> dict[str, Any]:
    """A plugin's SCHEMA (its schema.py)."""
    module = load_module(name, "schema")
    if module is None:
        raise ConfigError(f"plugin '{name}' has no schema module ({package_of(name)}.schema)")
    return module.SCHEMA  # type: ignore[no-any-return]
