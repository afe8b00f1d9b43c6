"""`tollway config`: Kong's `kong config` commands for declarative files.

    tollway config init [FILE]        write a commented starting file (default kong.yml)
    tollway config parse FILE         check a file against this node's entities and plugins
    tollway config db_import FILE     write every entity of a file to the database, in one transaction
    tollway config db_export [FILE]   write every entity of the database to a file (default kong.yml;
                                      `-` for stdout); an existing file is never overwritten

A file's problems end the command with `Error: Failed parsing:` and every problem, one per line,
and exit code 1; nothing was written.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import yaml
from sqlalchemy.ext.asyncio import create_async_engine

from tollway.clitools import pass_settings
from tollway.config import Settings
from tollway.declarative.dump import export_document
from tollway.declarative.fileformat import check_writable, read_file, write_file
from tollway.declarative.flatten import flatten
from tollway.declarative.load import import_document
from tollway.declarative.problems import DeclarativeError
from tollway.store import migrations
from tollway.store.db import Database, run_with_database
from tollway.store.entities.catalog import Catalog

DEFAULT_FILE = "kong.yml"
NO_FILE = "expected a declarative configuration file; see `tollway config --help`"

TEMPLATE = """\
# A declarative configuration for Tollway, in Kong's format: `tollway config db_import` writes
# it to the database, `tollway config db_export` writes the database to such a file.
_format_version: "3.0"
_transform: true

# services:
# - name: example-service
#   url: http://example.com
#   routes:
#   - name: example-route
#     paths:
#     - /example
#   plugins:
#   - name: key-auth
#
# consumers:
# - username: example-user
#   keyauth_credentials:
#   - key: a-secret-key
#   acls:
#   - group: premium
#
# plugins:
# - name: billable
"""


@click.group("config")
@click.option("-c", "--conf", type=click.Path(dir_okay=False), default=None,
              help="configuration file (key = value lines); as `tollway -c`")
@click.pass_context
def config(ctx: click.Context, conf: str | None) -> None:
    """Declarative configuration files (Kong's `kong config`)."""
    if conf is not None:
        ctx.find_root().ensure_object(dict)
        ctx.find_root().obj["conf"] = conf


@config.command()
@click.argument("file", required=False, default=DEFAULT_FILE)
def init(file: str) -> None:
    """Write a commented starting file."""
    target = Path(file).absolute()
    if target.exists():
        raise DeclarativeError(f"{target} already exists.\nWill not overwrite it.", "")
    target.write_text(TEMPLATE)


@config.command()
@click.argument("file", required=False)
@pass_settings
def parse(settings: Settings, file: str | None) -> None:
    """Check a file: its format, every entity and every reference."""
    document = read_file(_given(file))

    async def check() -> None:
        # The catalog wants a database; parse never uses it, so an in-memory one that is never opened.
        db = Database(create_async_engine("sqlite+aiosqlite://"), settings)
        try:
            await flatten(Catalog(settings, db), document)
        finally:
            await db.dispose()

    asyncio.run(check())
    click.echo("parse successful")


@config.command("db_import")
@click.argument("file", required=False)
@pass_settings
def db_import(settings: Settings, file: str | None) -> None:
    """Write every entity of a file to the database, in one transaction."""
    document = read_file(_given(file))

    async def work(db: Database) -> None:
        await migrations.ensure_bootstrapped(db, settings)
        await import_document(Catalog(settings, db), document,
                              on_checked=lambda: click.echo("parse successful, beginning import"))

    run_with_database(settings, work)
    click.echo("import successful")


@config.command("db_export")
@click.argument("file", required=False, default=DEFAULT_FILE)
@pass_settings
def db_export(settings: Settings, file: str) -> None:
    """Write every entity of the database to a file (`-`: stdout)."""
    async def work(db: Database) -> dict[str, object]:
        await migrations.ensure_bootstrapped(db, settings)
        return await export_document(Catalog(settings, db))

    if file != "-":
        check_writable(file)  # before reading anything: the file's name says all that can be wrong
    document = run_with_database(settings, work)
    if file == "-":
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        return
    write_file(file, document)


def _given(file: str | None) -> str:
    if not file:
        raise DeclarativeError(NO_FILE, "")
    return file
