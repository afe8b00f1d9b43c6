"""The proxy's hot path runs compiled (setup.py), from the sources as they are now.

A compiled module shadows its source on import, so an edit that was not built again would be
tested (and served) as the old code. scripts/setup.sh rebuilds when a source is newer; these
tests fail loudly when that was skipped. TOLLWAY_PURE_PYTHON=1 builds without compiling.
"""

from __future__ import annotations

import ast
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def hot_path_modules() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HOT_PATH":
            paths = ast.literal_eval(node.value)
            return [path.removesuffix(".py").replace("/", ".") for path in paths]
    raise AssertionError("setup.py has no HOT_PATH list")


def test_the_hot_path_list_names_existing_modules():
    modules = hot_path_modules()
    assert "tollway.proxy.protocol" in modules and "tollway.proxy.upstream" in modules
    for name in modules:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


@pytest.mark.skipif(bool(os.environ.get("TOLLWAY_PURE_PYTHON")), reason="built as plain Python")
def test_the_hot_path_is_compiled():
    interpreted = [name for name in hot_path_modules()
                   if not (importlib.import_module(name).__file__ or "").endswith(".so")]
    assert not interpreted, f"not compiled: {interpreted}; run scripts/setup.sh"


def c_modules() -> Iterator[str]:
    """setup.py's C_MODULES: modules written in C, built beside the compiled hot path."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Extension":
            yield ast.literal_eval(node.args[0])


def _source(so: Path) -> Path:
    stem = so.name.split(".")[0]
    written_in_c = so.with_name(stem + ".c")
    return written_in_c if written_in_c.is_file() else so.with_name(stem + ".py")


def test_no_compiled_module_is_older_than_its_source():
    stale = [str(so.relative_to(ROOT)) for so in (ROOT / "tollway").rglob("*.so")
             if _source(so).stat().st_mtime > so.stat().st_mtime]
    assert not stale, f"compiled before their sources changed: {stale}; run scripts/setup.sh"


def test_only_the_hot_path_is_compiled():
    compiled = {".".join(so.relative_to(ROOT).with_name(so.name.split(".")[0]).parts)
                for so in (ROOT / "tollway").rglob("*.so")}
    leftover = compiled - set(hot_path_modules()) - set(c_modules())
    assert not leftover, f"compiled by an earlier build, shadowing their sources: {sorted(leftover)}; " \
                         "run scripts/setup.sh"
