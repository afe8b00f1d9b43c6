"""The `tollway` command: Kong's CLI verbs for one Tollway node.

Every TollwayError ends the command with one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys

import click

from tollway import __version__
from tollway.errors import TollwayError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--conf", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Read settings from FILE (`key = value` lines); TOLLWAY_* variables override it.")
@click.version_option(__version__, prog_name="tollway")
@click.pass_context
def cli(ctx: click.Context, conf: str | None) -> None:
    """Tollway: an API gateway that meters every call for billing.

    Every command works on the node of one prefix, the folder of its database, logs and pid file:
    the `prefix` setting, ~/.tollway by default (/usr/local/tollway as root). Settings are the
    defaults, then the -c FILE (or TOLLWAY_CONF), then TOLLWAY_<SETTING> variables, such as
    TOLLWAY_PREFIX=/srv/tollway.
    """
    ctx.ensure_object(dict)
    ctx.obj["conf"] = conf


def _add_commands() -> None:
    from tollway.billing.cli import plans, pricing
    from tollway.billing.cli_invoices import invoices
    from tollway.declarative.cli import config
    from tollway.metering.cli import report
    from tollway.quickstart import quickstart
    from tollway.server.commands import health, reload, start, stop
    from tollway.store.cli import migrations

    for command in (migrations, config, start, stop, reload, health, quickstart, report, plans, pricing,
                    invoices):
        cli.add_command(command)


def main() -> None:
    _add_commands()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TollwayError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
