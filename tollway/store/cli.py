"""`tollway migrations`: bootstrap, up, list and reset the database of this configuration."""

from __future__ import annotations

import click

from tollway.clitools import pass_settings, require_database
from tollway.config import Settings
from tollway.store import migrations as runner
from tollway.store.db import Database, run_with_database


def _echo_ran(ran: list[runner.Migration]) -> None:
    for migration in ran:
        click.echo(f"{migration.subsystem} migrated up to: {migration.name}")


@click.group()
def migrations() -> None:
    """Create and update the database schema.

    As with `kong migrations`: `bootstrap` on a new database, `up` after an upgrade or when a
    plugin is enabled.
    """


@migrations.command()
@pass_settings
def bootstrap(settings: Settings) -> None:
    """Create Tollway's tables in a new database.

    Nothing happens if they are there already.
    """
    async def work(db: Database) -> list[runner.Migration] | None:
        if await runner.is_bootstrapped(db):
            return None
        return await runner.bootstrap(db, settings)

    ran = run_with_database(settings, work)
    if ran is None:
        click.echo("Database already bootstrapped")
        return
    click.echo("Bootstrapping database...")
    _echo_ran(ran)
    click.echo(f"{len(ran)} migrations processed\nDatabase is up-to-date")


@migrations.command()
@pass_settings
def up(settings: Settings) -> None:
    """Apply the migrations not yet run.

    Those of the core and of the enabled plugins (the `plugins` setting).
    """
    require_database(settings)
    ran = run_with_database(settings, lambda db: runner.up(db, settings))
    if not ran:
        click.echo("Database is already up-to-date")
        return
    _echo_ran(ran)
    click.echo(f"{len(ran)} migrations processed\nDatabase is up-to-date")


@migrations.command("list")
@pass_settings
def list_(settings: Settings) -> None:
    """Show the migrations already run and those waiting."""
    require_database(settings)
    states = run_with_database(settings, lambda db: runner.list_state(db, settings))
    click.echo("Executed migrations:")
    for state in states:
        if state.executed:
            click.echo(f"{state.subsystem}: {', '.join(state.executed)}")
    waiting = [s for s in states if s.pending]
    if waiting:
        click.echo("\nPending migrations:")
        for state in waiting:
            click.echo(f"{state.subsystem}: {', '.join(state.pending)}")
        click.echo("\nRun 'tollway migrations up' to proceed")
    else:
        click.echo("\nDatabase is up-to-date")


@migrations.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def reset(settings: Settings, yes: bool) -> None:
    """Delete every table: all configuration and usage data is lost."""
    require_database(settings)
    if not yes:
        click.confirm("This will drop all Tollway data. Continue?", abort=True)
    run_with_database(settings, runner.reset)
    click.echo("Database reset")
