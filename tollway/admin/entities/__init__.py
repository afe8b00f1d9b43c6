"""The core entities of the Admin API, one module each: services, routes, consumers, plugins."""

from __future__ import annotations

from tollway.admin.entities.consumers import CONSUMERS
from tollway.admin.entities.plugins import plugins_entity
from tollway.admin.entities.routes import ROUTES
from tollway.admin.entities.services import SERVICES
from tollway.admin.schema import EntitySchema
from tollway.config import Settings


def core_entities(settings: Settings) -> list[EntitySchema]:
    """Services, routes, consumers and plugins (whose config follows the enabled plugins)."""
    return [SERVICES, ROUTES, CONSUMERS, plugins_entity(settings.enabled_plugins)]
