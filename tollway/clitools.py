"""What every CLI command shares: the settings of this invocation, how to run `tollway` again in a
child process, and the check that keeps a command from creating a database by looking for one."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tollway.config import Settings, load_settings
from tollway.errors import NotBootstrapped

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


def tollway_command(settings: Settings) -> list[str]:
    """The command line of `tollway` with this invocation's settings file, for a child process.

    It is this Python with -P: a `tollway/` folder in the current directory (a clone's, seen from
    its parent folder) must not be taken for the installed package.
    """
    conf = ["-c", settings.config_file] if settings.config_file else []
    return [sys.executable, "-P", "-m", "tollway", *conf]


def require_database(settings: Settings) -> None:
    """Raise NotBootstrapped when the SQLite file is missing: opening it would create an empty one.

    Every command but `migrations bootstrap` uses a database that is already there.
    """
    if settings.database != "sqlite" or settings.database_path.exists():
        return
    where = f"sqlite_path {settings.sqlite_path}" if settings.sqlite_path else f"prefix {settings.prefix}"
    raise NotBootstrapped(
        f"no Tollway database in {where} ({settings.database_path} does not exist). "
        "'tollway migrations bootstrap' creates one there; if Tollway runs with another prefix, "
        "give this command the same settings (TOLLWAY_PREFIX, or -c FILE)")
