"""`tollway plans apply FILE` and `tollway pricing simulate`: billing from the command line.

Both read and write the database directly (as `tollway report` does), so they work while the
gateway is stopped; writes bump the configuration version, so a running node picks them up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from tollway.billing import plans_apply, simulation
from tollway.billing.plans_file import load
from tollway.clitools import pass_settings
from tollway.config import Settings
from tollway.errors import ForeignKeysUnresolved, SchemaViolation
from tollway.store.db import Database, run_with_database
from tollway.store.entities.catalog import Catalog


@click.group("plans")
def plans() -> None:
    """Meters and plans, declared in a YAML file."""


@plans.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Show the changes without making them.")
@pass_settings
def apply_command(settings: Settings, path: str, dry_run: bool) -> None:
    """Create or update the meters and plans a YAML file declares.

    Their charges and entitlements too.

    Idempotent: a second run changes nothing. A plan's charges and entitlements become exactly
    those listed; meters and plans the file leaves out are left alone.
    """
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    document = load(text)

    async def work(db: Database) -> tuple[list[plans_apply.Change], list[str]]:
        return await plans_apply.apply(Catalog(settings, db), document, dry_run=dry_run)

    changes, notes = run_with_database(settings, work)
    for change in changes:
        click.echo(str(change))
    if not changes:
        click.echo("no changes")
    elif dry_run:
        click.echo(f"dry run: {len(changes)} change(s) not made")
    for note in notes:
        click.echo(note)


@click.group("pricing")
def pricing() -> None:
    """What plans charge."""


@pricing.command("simulate")
@click.option("--plan", "plan", required=True, help="The plan's name or id.")
@click.option("--version", "version", type=int, default=None, help="A recorded version (default: the plan as it is).")
@click.option("--usage", "usage", multiple=True, metavar="METER=UNITS", help="Units of a meter; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer of POST /pricing/simulate.")
@pass_settings
def simulate_command(settings: Settings, plan: str, version: int | None, usage: tuple[str, ...],
                     as_json: bool) -> None:
    """Price some usage with a plan, line by line with tiers."""
    pairs = {}
    for item in usage:
        meter, sep, units = item.partition("=")
        if not sep or not meter:
            raise click.BadParameter(f"expected METER=UNITS, got '{item}'", param_hint="--usage")
        pairs[meter] = units
    try:
        wanted = simulation.parse({"plan": plan, "version": version, "usage": pairs})

        async def work(db: Database) -> dict[str, Any]:
            async with db.connect() as conn:
                return await simulation.simulate(conn, wanted)

        answer = run_with_database(settings, work)
    except SchemaViolation as exc:
        raise click.ClickException("; ".join(plans_apply.problem_lines("", exc.fields))) from None
    except ForeignKeysUnresolved as exc:
        raise click.ClickException(f"no plan with id or name '{exc.value}'") from None
    if as_json:
        click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(format_quote(answer))


def format_quote(answer: dict[str, Any]) -> str:
    """A quote as a readable table: each line, its tiers indented under it, then the total."""
    currency = answer["currency"]
    rows = []
    for line in answer["lines"]:
        name = "base fee" if line["kind"] == "base_fee" else f"{line['meter']} ({line['model']}, {line['units']} units)"
        rows.append((name, line["amount"]))
        for tier in line["tiers"]:
            upper = "" if tier["to"] is None else tier["to"]
            count = f"{tier['packages']} packages" if "packages" in tier else tier["units"]
            rows.append((f"    {tier['from']}..{upper}: {count} x {tier['unit_price']}"
                         + (f" + {tier['flat_fee']}" if tier["flat_fee"] != "0" else ""), tier["amount"]))
    rows.append((f"total ({currency})", answer["total"]))
    width = max(len(name) for name, _ in rows)
    head = f"plan {answer['plan']['name']}" + (f" version {answer['plan_version']}" if answer["plan_version"] else "")
    return "\n".join([head, *(f"{name.ljust(width)}  {amount:>14}" for name, amount in rows)])
