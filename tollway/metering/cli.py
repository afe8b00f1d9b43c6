"""`tollway report`: the usage report of GET /billable, read straight from the database.

It works while the gateway is stopped; a readable table by default, every row as CSV with --csv.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from tollway.clitools import pass_settings, require_database
from tollway.config import Settings
from tollway.metering.periods import PERIODS
from tollway.metering.query import GROUPS, UsageQuery
from tollway.metering.report import UsageReport
from tollway.store.db import Database, run_with_database

_TABLE_COLUMNS = ("period_start", "consumer", "service", "route", "status", "requests",
                  "request_bytes", "response_bytes", "latency_ms_avg")


def _cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if column == "consumer" and value:
        return str(value["username"] or value["custom_id"] or value["id"])
    if column in ("service", "route") and value:
        return str(value["name"] or value["id"])
    return "-" if value is None else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a plain fixed-width table with a header line."""
    cells = [list(_TABLE_COLUMNS)] + [[_cell(row, column) for column in _TABLE_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_TABLE_COLUMNS))]
    numeric = {i for i, column in enumerate(_TABLE_COLUMNS) if column in
               ("status", "requests", "request_bytes", "response_bytes", "latency_ms_avg")}
    return "\n".join(
        "  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(line))
        .rstrip() for line in cells)


async def _report(db: Database, settings: Settings, query: UsageQuery, as_csv: bool) -> None:
    report = await UsageReport.prepare(db, settings, query)
    if as_csv:
        async for chunk in report.csv_chunks():
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    else:
        rows = [row async for row in report.rows()]
        click.echo(format_table(rows) if rows else "no usage in this range")


@click.command("report")
@click.option("--period", default="day", show_default=True, help="One of " + ", ".join(PERIODS) + ".")
@click.option("--start", default=None, help="Start, ISO 8601 or epoch seconds (default: the start of this month).")
@click.option("--end", default=None, help="End, ISO 8601 or epoch seconds (default: now).")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone in which periods begin.")
@click.option("--consumer", default=None, help="Only this consumer (id or username); - for calls without one.")
@click.option("--service", default=None, help="Only this service (id or name); - for calls without one.")
@click.option("--route", default=None, help="Only this route (id or name).")
@click.option("--status", default=None, help="Only this status code (200) or class (4xx).")
@click.option("--group-by", default=",".join(GROUPS), show_default=True,
              help="Count per these, comma separated: any of " + ", ".join(GROUPS) + ".")
@click.option("--csv", "as_csv", is_flag=True, help="Print every row as CSV instead of a table.")
@pass_settings
def report(settings: Settings, as_csv: bool, **options: str | None) -> None:
    """Show metered usage, as a table or as CSV.

    Calls are counted per period, consumer, service, route and status, as GET /billable on the
    Admin API counts them. It reads the database directly, so it works while the gateway is
    stopped.
    """
    params = {name: value for name, value in options.items() if value is not None}
    query = UsageQuery.parse(params, time.time())  # bad options first: they are this command's own mistake
    require_database(settings)
    run_with_database(settings, lambda db: _report(db, settings, query, as_csv))
