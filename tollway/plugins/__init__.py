"""Plugins: each one a package found by its name (see registry.py); `base.py` is their contract."""

from __future__ import annotations

from tollway.plugins.registry import load_module, schema

__all__ = ["load_module", "schema"]
