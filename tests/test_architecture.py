"""The house stays easy to read: modules import only from their own layer or below, the import
graph has no cycles, and no module of tollway/ is longer than 600 lines.

Imports made only for type checking (under `if TYPE_CHECKING:`) are left out: they create no
dependency when the code runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tollway"
MAX_LINES = 600

# Lowest first: a module may import from its own layer and from those before it.
LAYERS = ("foundation", "settings", "pure logic", "plugin contract", "proxy", "plugin runtime", "store",
          "ledger and billing", "admin", "server", "cli")
# Parts a plugin (or a core component) brings, by the layer they belong to.
PART_LAYERS = {"schema": "plugin runtime", "handler": "plugin runtime", "keys": "plugin runtime",
               "migrations": "store", "daos": "store", "tables": "store", "services": "ledger and billing",
               "api": "admin", "status_api": "admin", "cli": "cli"}
# The billing package is pure money logic (Decimal in, Decimal out) but for these modules, which read
# and write the database, serve the Admin API or the CLI.
BILLING_LAYERS = {"ledger_usage": "ledger and billing", "plan_store": "ledger and billing",
                  "plans_apply": "ledger and billing", "simulation": "ledger and billing",
                  "subscription_writes": "ledger and billing", "usage_reads": "ledger and billing",
                  "invoice_store": "ledger and billing", "invoice_run": "ledger and billing",
                  "api_invoices": "admin", "cli_invoices": "cli",
                  "api_subscriptions": "admin", "api_docs": "admin"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module in ("tollway", "tollway.errors"):
        return "foundation"
    if module in ("tollway.config", "tollway.plugins", "tollway.plugins.registry", "tollway.clitools"):
        return "settings"
    if parts[-1] == "cli" or module in ("tollway.quickstart", "tollway.__main__"):
        return "cli"
    if module in ("tollway.counters", "tollway.metering.periods", "tollway.metering.latency",
                  "tollway.metering.spool_line", "tollway.mockbin"):
        return "pure logic"
    if parts[1] == "billing" and len(parts) > 2 and parts[2] in BILLING_LAYERS:
        return BILLING_LAYERS[parts[2]]
    if module in ("tollway.plugins.base", "tollway.plugins.node"):
        return "plugin contract"
    if parts[1] == "proxy" or module in ("tollway.metering.spool", "tollway.metering.aggregate",
                                         "tollway.metering.backlog"):
        return "proxy"
    # A part is the module right under its owner: tollway.plugins.<plugin>.<part> or tollway.<component>.<part>.
    part = parts[3] if parts[1] == "plugins" and len(parts) > 3 else parts[2] if len(parts) > 2 else ""
    if part in PART_LAYERS:
        return PART_LAYERS[part]
    if parts[1] == "plugins":
        return "plugin runtime"
    if parts[1] == "store":
        return "store"
    if parts[1] == "billing":
        return "pure logic"
    if parts[1] == "metering":
        return "ledger and billing"
    if parts[1] in ("admin", "declarative"):
        return "admin"
    if parts[1] == "server":
        return "server"
    raise AssertionError(f"{module}: no layer; add it to tests/test_architecture.py")


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT.parent).with_suffix("")
    name = ".".join(relative.parts)
    return name.removesuffix(".__init__")


def _runtime_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Modules imported when the code runs (not under `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        imported = _runtime_imports(tree, name, path.name == "__init__.py")
        graph[name] = {target for target in imported if target in paths and target != name}
    return graph


def test_every_module_imports_only_its_own_layer_or_below() -> None:
    order = {layer: rank for rank, layer in enumerate(LAYERS)}
    wrong = []
    for module, targets in sorted(_graph().items()):
        for target in sorted(targets):
            if order[layer_of(target)] > order[layer_of(module)]:
                wrong.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    assert not wrong, "imports reaching up a layer:\n" + "\n".join(wrong)


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_no_module_is_longer_than_600_lines() -> None:
    long = {str(path.relative_to(ROOT.parent)): n for path in ROOT.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
