"""The ``samt`` package's modules import one another without a cycle.

The check parses the sources (``ast``): every import statement counts, at module level, inside a
function (a deferred import) or under ``TYPE_CHECKING``, since each one says that a module needs
another. An import is an edge to the most specific ``samt`` module it names (``from samt.optim
import choices`` is an edge to ``samt.optim.choices``, ``from samt.optim import SAMT`` one to
``samt.optim``); a package's ``__init__`` is not implied by importing its submodules.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "samt"


def module_name(path: Path, root: Path = REPO) -> str:
    """``samt/train/runner.py`` -> ``samt.train.runner``; ``samt/optim/__init__.py`` ->
    ``samt.optim``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement ``node`` of ``module`` names (candidates, most
    specific first for each name)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: against the package of ``module``
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """``{module: the modules of sources it imports}`` from ``{module: (source, is_package)}``."""
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for module, (source, is_package) in sources.items():
        for node in ast.walk(ast.parse(source)):
            names = _imported(node, module, is_package)
            if isinstance(node, ast.ImportFrom):  # ``from x import a, b``: a, b or else x
                targets = [n for n in names[:-1] if n in sources] or [names[-1]]
            else:
                targets = names
            for name in targets:
                while name and name not in sources:  # ``import samt.x.y.z``: the module part
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan), each
    sorted; every import cycle lies within one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_has_modules_to_check():
    sources = _package_sources()
    assert {"samt.cli", "samt.validation", "samt.train.build_optimizer", "samt.optim"} <= set(
        sources)


def test_the_package_imports_form_no_cycle():
    graph = import_graph(_package_sources())
    assert "samt.targets" in graph["samt.train.build_optimizer"]  # the graph sees the imports
    found = cycles(graph)
    assert found == [], "import cycles (each a set of modules that import one another): " + \
        "; ".join(" <-> ".join(component) for component in found)


def test_the_check_catches_a_deferred_cycle_and_relative_imports():
    """The cycle there was: build_optimizer imported validation at module level, validation
    imported build_optimizer inside a function."""
    sources = {
        "samt.validation": ("def f():\n    from samt.train.build_optimizer import g\n", False),
        "samt.train": ("", True),
        "samt.train.build_optimizer": ("from samt.validation import RUNNER_KEYS\n", False),
        "samt.train.a": ("from . import b\n", False),
        "samt.train.b": ("import typing\nif typing.TYPE_CHECKING:\n    from .a import X\n",
                         False),
        "samt.train.c": ("from samt.train import a\nimport samt.train.b\n", False),
    }
    assert cycles(import_graph(sources)) == [
        ["samt.train.a", "samt.train.b"], ["samt.train.build_optimizer", "samt.validation"]]
