"""What every CLI command shares: the settings of this invocation and the way errors end it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tollway.config import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_of(ctx: click.Context) -> Settings:
    """Settings from `-c FILE` (or TOLLWAY_CONF) and TOLLWAY_* variables, loaded once per invocation."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        root.obj["settings"] = load_settings(root.obj.get("conf"))
    return root.obj["settings"]  # type: ignore[no-any-return]


def pass_settings(func: F) -> F:
    """Decorator: call the command with `settings` as its first argument."""

    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        return func(settings_of(ctx), *args, **kwargs)

    return wrapper  # type: ignore[return-value]
