"""The import graph of effnet's own modules, read from the source, and the layering it must respect.

`LAYERS` is the one place the allowed direction is written: lowest first, a module may import from its
own layer or a lower one. Every import counts: at module level, inside a function (lazy loading is fine,
hiding a cycle is not) and under `TYPE_CHECKING`. Within a layer the graph between files is acyclic.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIRS = {"api": "effnet", "cli": "effnet.cli", "nas": "effnet.nas", "scaling": "effnet.scaling"}
"""Source folder -> the package it installs as (pyproject.toml's `package-dir`)."""

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("effnet.nas",)),
    ("network", ("effnet.nas.net",)),
    ("data", ("effnet.nas.data",)),
    ("training", ("effnet.nas.training",)),
    ("search space", ("effnet.nas.space",)),
    ("latency", ("effnet.nas.latency",)),
    ("proxies", ("effnet.nas.proxies",)),
    ("studies", ("effnet.nas.study",)),
    ("architecture search", ("effnet.nas.search",)),
    ("deployment", ("effnet.nas.export", "effnet.nas.inference", "effnet.nas.predict")),
    ("scaling", ("effnet.scaling",)),
    ("command line", ("effnet.cli",)),
    ("public API", ("effnet",)),
)
"""Each layer by the module prefixes it owns; a module belongs to the layer of its longest matching prefix
(so `effnet.nas.errors` is foundation, `effnet.nas.net.spec` network, `effnet.nas.export` deployment)."""


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the project under `root`, by its import name."""
    modules = {}
    for folder, package in PACKAGE_DIRS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            name = ".".join((package, *(part for part in parts if part != "__init__")))
            modules[name] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that `name` (a module, or a name inside one) resolves to."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(modules: dict[str, Path]) -> list[Import]:
    """Every import of one project module by another, wherever in the file it is written."""
    found = []
    for importer, path in modules.items():
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                imported = _owner(target, modules)
                if imported is not None and imported != importer:
                    found.append(Import(importer, imported, node.lineno))
    return found


def layer_of(module: str) -> int:
    """The index in `LAYERS` of the layer that owns `module`."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None:
        raise LookupError(f"{module} is in no layer of LAYERS")
    return best


def unplaced_packages(modules: dict[str, Path]) -> list[str]:
    """The sub-packages of `effnet.nas` that `LAYERS` does not name: one would fall into the foundation unseen."""
    named = {prefix for _, prefixes in LAYERS for prefix in prefixes}
    packages = {name for name, path in modules.items() if path.name == "__init__.py" and name.count(".") == 2}
    return sorted(package for package in packages if package.startswith("effnet.nas.") and package not in named)


def upward_imports(edges: list[Import]) -> list[str]:
    """One line per import that goes from a lower layer to a higher one."""
    return [
        f"{edge.importer} (line {edge.line}, layer {LAYERS[layer_of(edge.importer)][0]}) imports "
        f"{edge.imported} (layer {LAYERS[layer_of(edge.imported)][0]})"
        for edge in edges
        if layer_of(edge.imported) > layer_of(edge.importer)
    ]


def cycles(edges: list[Import]) -> list[list[str]]:
    """The groups of modules that import each other in a circle (strongly connected, two or more)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(start: str) -> None:
        # Tarjan's algorithm, iterative so that a long chain of imports cannot exhaust the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = lowest[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowest[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    lowest[node] = min(lowest[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowest[parent] = min(lowest[parent], lowest[node])
                if lowest[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups
