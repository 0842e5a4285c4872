"""No hubkit module imports another that imports it back, at the top or inside a function.

A cycle hidden in a function import works until someone moves the import, and it says two
modules share something that belongs in a third. The graph is read from the package's source
(``ast``), so an import inside a function counts as much as one at the top. Importing a
submodule runs its package's ``__init__`` first, so that counts as importing the package too
(except for a module's own packages, which are always imported before it).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import hubkit

PACKAGE = Path(hubkit.__file__).parent


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The hubkit modules an import statement names (a ``from X import Y`` of a submodule Y names Y)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = module if is_package else module.rpartition(".")[0]
    if node.level:
        parts = base.split(".")[: len(base.split(".")) - (node.level - 1)]
        target = ".".join([*parts, node.module] if node.module else parts)
    else:
        target = node.module or ""
    submodules = {f"{target}.{alias.name}" for alias in node.names} & known
    return submodules if len(submodules) == len(node.names) else submodules | ({target} & known)


def import_graph() -> dict[str, set[str]]:
    """Each hubkit module -> the hubkit modules it imports, directly or by their packages' ``__init__``."""
    files = {_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {}
    for module, path in files.items():
        direct: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                direct |= _imported(node, module, path.name == "__init__.py", known)
        packages = {".".join(d.split(".")[:i]) for d in direct for i in range(1, d.count(".") + 1)}
        graph[module] = {
            m for m in (direct | packages) & known if m != module and not module.startswith(f"{m}.")
        }
    return graph


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "hubkit.cards" in graph["hubkit.cli"]  # cli imports it inside its commands only
    assert {"hubkit.decontam", "hubkit.decontam.embed"} <= graph["hubkit.data"]  # by its __init__ too
    assert "hubkit" not in graph["hubkit.schemas"]  # `from . import __version__`: its own package


def test_no_import_cycles() -> None:
    try:
        order = list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"hubkit modules import each other: {' -> '.join(exc.args[1])}") from None
    assert "hubkit.schemas" in order
