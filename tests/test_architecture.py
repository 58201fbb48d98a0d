"""The import graph of the console's own code: no cycle between modules, no import that points up a layer.

Built with ``ast`` from the source files, so an import inside a function or under ``TYPE_CHECKING`` counts
as much as one at the top of a module: hiding an import in a function hides a cycle, it does not remove it.
The layers, lowest first, are ``LAYERS`` below; docs/architecture.md explains them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("appliance", "workers", "console")
# Tests and migrations are left out: tests may import anything, and migrations are frozen history.
SKIPPED_DIRS = {"tests", "migrations", "__pycache__"}

# Lowest first. A module may import modules of its own layer or of a lower one, never of a higher one.
# Each layer is a list of module prefixes; a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Settings only read the environment (with console/env.py's strict readers): nothing of the apps.
    ("settings", ("console.env", "console.settings", "console.sso_settings")),
    # The request context, the permission gate, the API base: what every app builds on.
    ("core", ("appliance.core",)),
    # The apps. They import each other where one uses another's services, but never in a cycle.
    ("apps", ("appliance",)),
    # The Celery app and the node agent: they start the apps' tasks, the apps never reach for them.
    ("workers", ("workers",)),
    # The edges that put everything together: URLs, ASGI and WebSocket routing, the package that loads Celery.
    ("edge", ("console",)),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts):
                files[module_name(path)] = path
    return files


def _known(name: str, modules: set[str]) -> str | None:
    """The module an import of ``name`` runs: itself, or the nearest package of ours that holds it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield f"{base}.{alias.name}"  # a submodule if there is one, else the name falls back to `base`


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = {_known(name, modules) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(module: str) -> int:
    best, best_length = -1, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = rank, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "appliance.core.context" in graph["workers.node_agent"]  # imported inside NodeAgent.run


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    described = ["\n".join(f"    {m} → {sorted(graph[m] & set(c))}" for m in c) for c in found]
    assert not found, "import cycles:\n" + "\n  and\n".join(described)


def test_no_import_points_up_a_layer() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports up a layer:\n" + "\n".join(upward)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
