"""The import graph of the repository's packages, read from their source: nothing is imported or run.

A node is a module (``semcl_components.losses``; a package's ``__init__.py`` is the package itself); an edge says that
one module imports another anywhere in its code: at the top, inside functions and under ``if TYPE_CHECKING:`` alike,
since each of them ties the two modules together. ``from package import name`` is an edge to the submodule ``name``
when there is one, else to the package. ``tests/test_import_graph.py`` checks the packages' layering and the absence of
cycles with it; ``tests/test_zoo_contents.py`` what the model-zoo zip must carry.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["find_cycle", "import_graph", "module_imports", "package_modules"]


def package_modules(folder: Path, name: str | None = None) -> dict[str, Path]:
    """Every module below ``folder`` (dotted name -> file), named as the package ``name`` (default: the folder's name)."""
    modules = {}
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = [name or folder.name, *path.relative_to(folder).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def module_imports(path: Path, name: str, modules: Iterable[str]) -> set[str]:
    """Which of ``modules`` the module ``name`` (file ``path``) imports anywhere in its code."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            source = ".".join(p for p in (base, node.module or "") if p)
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return (found & known) - {name}


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules among ``modules`` it imports (:func:`module_imports` of each)."""
    return {name: module_imports(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]`` (each imports the next), or None if it has none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path, pending = [start], {start}, [iter(sorted(graph[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:  # every import of path[-1] explored: no cycle through it
                finished = path.pop()
                on_path.remove(finished)
                done.add(finished)
                pending.pop()
                continue
            if following in on_path:
                return path[path.index(following):] + [following]
            if following not in done and following in graph:
                path.append(following)
                on_path.add(following)
                pending.append(iter(sorted(graph[following])))
    return None
