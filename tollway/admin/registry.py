"""Which entities exist: the core ones and those of enabled plugins (their daos.py ENTITIES)."""

from __future__ import annotations

from tollway import plugins
from tollway.admin.entities import core_entities
from tollway.admin.schema import EntitySchema
from tollway.config import Settings


def plugin_entities(settings: Settings) -> list[EntitySchema]:
    found: list[EntitySchema] = []
    for name in settings.enabled_plugins:
        module = plugins.load_module(name, "daos")
        if module is None:
            continue
        # entities(settings) when they depend on settings (key-auth's hashing), else ENTITIES
        found.extend(module.entities(settings) if hasattr(module, "entities") else module.ENTITIES)
    return found


def entities_for(settings: Settings) -> list[EntitySchema]:
    """Core entities first, then plugin entities, in the order of settings.plugins."""
    return core_entities(settings) + plugin_entities(settings)
