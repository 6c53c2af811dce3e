"""The model-zoo zip carries only what the bundle's configs reach, and ``scripts/`` holds only entry points.

The export copies ``semcl_components`` and the phantom simulator ``semcl_phantoms`` unchanged into the zip's
``scripts/`` (``semcl_tools.zoo_export.bundle_files``), so every module of both packages must be reachable from a
config: named by a config (``semcl_components.<module>.<name>``) or imported, at any depth and inside functions too, by
a module that is (the simulator through the runtime's ``ensure_phantom_dataset``, which writes the embedded data).
Anything else (statistics of the benchmark, run helpers) belongs to ``semcl_benchmark`` or ``semcl_tools``.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

from semcl_tools.import_graph import import_graph, package_modules
from semcl_tools.repository import CONFIGS, ROOT
from semcl_tools.zoo_export import PACKAGES, bundle_files

SHIPPED = tuple(package.name for package in PACKAGES)


def unreachable_modules(packages: list[Path], configs: Path) -> list[str]:
    """Modules of ``packages`` that no config reaches (by name, or by imports of a module it names), sorted."""
    modules = {name: path for package in packages for name, path in package_modules(package).items()}
    graph = import_graph(modules)
    text = "\n".join(p.read_text(encoding="utf-8") for p in configs.iterdir() if p.suffix in (".yaml", ".json"))
    todo = set()
    for reference in re.findall(rf"\b(?:{'|'.join(SHIPPED)})(?:\.\w+)*", text):
        parts = reference.split(".")
        todo.add(next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules))
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        parents = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1)}  # their __init__ runs first
        todo |= parents | graph[name]
    return sorted(set(modules) - reached)


def test_every_module_of_the_zipped_packages_is_reachable_from_a_config():
    zipped = {name for name in bundle_files() if name.startswith("scripts/")}
    sources = {
        f"scripts/{package.name}/{p.relative_to(package).as_posix()}"
        for package in PACKAGES
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert SHIPPED == ("semcl_components", "semcl_phantoms")
    assert zipped == sources
    assert unreachable_modules(list(PACKAGES), CONFIGS) == []


def test_a_module_that_no_config_reaches_is_found(tmp_path):
    copies = []
    for package in PACKAGES:
        copies.append(tmp_path / package.name)
        shutil.copytree(package, copies[-1], ignore=shutil.ignore_patterns("__pycache__"))
    components, phantoms = copies
    (components / "statistics.py").write_text("import numpy as np\n\n\ndef mean(x):\n    return np.mean(x)\n")
    (components / "transforms" / "extra.py").write_text("from ..statistics import mean\n")  # reaches the unreached
    (phantoms / "unused_preset.py").write_text("from .realistic_preset import REALISTIC\n")
    assert unreachable_modules(copies, CONFIGS) == [
        "semcl_components.statistics",
        "semcl_components.transforms.extra",
        "semcl_phantoms.unused_preset",
    ]


def test_scripts_are_entry_points_that_no_module_imports():
    scripts = {p.stem for p in (ROOT / "scripts").glob("*.py")}
    for path in [*ROOT.glob("semcl_*/**/*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"sys\.path\.(insert|append)\(.*scripts", text), path
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & scripts, f"{path} imports a script: {names}"
