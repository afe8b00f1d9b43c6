"""The prometheus plugin's routes on the status listener (Kong's status_api.lua): GET /metrics."""

from __future__ import annotations

from tollway.plugins.prometheus.api import routes

__all__ = ["routes"]
