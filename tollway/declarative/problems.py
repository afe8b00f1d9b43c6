"""What is wrong with a declarative file: a tree of problems, printed as Kong prints them.

    in 'services':
      - in entry 1 of 'services' (name: my-service):
        in 'port': value should be between 0 and 65535
        in 'routes':
          - in entry 2 of 'routes':
            in 'paths': expected an array

An entry is named by its position (from 1) and, when it has one, by its name, username or
group. Field problems come in the shapes of a SchemaViolation's `fields`: a message, a dict for
a record's fields, a list (None where fine) for an array's elements, `@entity` for the whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.errors import TollwayError


@dataclass
class Entry:
    """One entity of the file, by where it stands: problems of its own and of its children."""

    label: str                                     # "entry 1 of 'services' (name: my-service)"
    fields: dict[str, Any] = field(default_factory=dict)
    children: dict[str, list[Entry]] = field(default_factory=dict)

    def child(self, key: str, label: str) -> Entry:
        found = next((entry for entry in self.children.get(key, []) if entry.label == label), None)
        if found is None:
            found = Entry(label)
            self.children.setdefault(key, []).append(found)
        return found

    def empty(self) -> bool:
        return not self.fields and all(entry.empty() for entries in self.children.values() for entry in entries)


class Problems:
    """Problems found in one file; `root` holds those of the file's top level."""

    def __init__(self) -> None:
        self.root = Entry("the file")

    def __bool__(self) -> bool:
        return not self.root.empty()

    def render(self) -> str:
        return "\n".join(_render(self.root, 0))


def _render(entry: Entry, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}{line}" for line in _field_lines(entry.fields)]
    for key, entries in entry.children.items():
        shown = [child for child in entries if not child.empty()]
        if not shown:
            continue
        lines.append(f"{pad}in '{key}':")
        for child in shown:
            lines.append(f"{pad}  - in {child.label}:")
            lines += _render(child, depth + 2)
    return lines


def _field_lines(fields: Mapping[str, Any]) -> list[str]:
    lines = list(fields.get("@entity", []))
    for name in sorted(k for k in fields if k != "@entity"):
        lines += _problem_lines(name, fields[name])
    return lines


def _problem_lines(name: str, problem: Any) -> list[str]:
    if isinstance(problem, Mapping):
        return [f"in '{name}':"] + ["  " + line for line in _field_lines(problem)]
    if not isinstance(problem, list):
        return [f"in '{name}': {problem}"]
    lines = [f"in '{name}':"]
    for index, item in enumerate(problem, 1):
        if item is None:
            continue
        if isinstance(item, Mapping):
            lines.append(f"  - in entry {index} of '{name}':")
            lines += ["    " + line for line in _field_lines(item)]
        else:
            lines.append(f"  - in entry {index} of '{name}': {item}")
    return lines


class DeclarativeError(TollwayError):
    """A declarative file that cannot be used: it names every problem, the entity and the field."""

    def __init__(self, heading: str, details: str) -> None:
        self.heading, self.details = heading, details
        super().__init__(f"{heading}\n{details}" if details else heading)
