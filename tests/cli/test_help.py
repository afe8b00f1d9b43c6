"""Every help text of the CLI speaks to the user: no internal names, no words from elsewhere."""

from __future__ import annotations

import re

import click
import pytest

from tollway import cli


def _all_commands() -> list[tuple[str, click.Command]]:
    cli._add_commands()
    found: list[tuple[str, click.Command]] = []

    def walk(name: str, command: click.Command) -> None:
        found.append((name, command))
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                walk(f"{name} {sub_name}", sub)

    walk("tollway", cli.cli)
    return found


COMMANDS = _all_commands()


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_help_names_no_internal_class_and_no_story_from_elsewhere(name: str, command: click.Command) -> None:
    with click.Context(command, info_name=name) as ctx:
        text = command.get_help(ctx)
    assert not re.search(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b", text), text  # TollwayError, QueryError...
    for word in ("seed", "story", "raise", "exception"):
        assert word not in text.lower(), (word, text)
    first_line = (command.help or "").strip().splitlines()[0]
    assert first_line.endswith(".") and len(first_line) <= 64, first_line  # shown whole in `tollway --help`


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_help_is_a_sentence(name: str, command: click.Command) -> None:
    for param in command.params:
        if isinstance(param, click.Option) and param.help:
            assert param.help[0].isupper() and param.help.endswith("."), (name, param.help)
