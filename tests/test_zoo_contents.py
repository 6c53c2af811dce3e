"""The model-zoo zip carries only what the bundle's configs reach, and ``scripts/`` holds only entry points.

The export copies ``semcl_components`` unchanged into the zip's ``scripts/semcl_components``
(``semcl_tools.zoo_export.bundle_files``), so every module of the package must be reachable from a config: named by
a config (``semcl_components.<module>.<name>``) or imported, at any depth and inside functions too, by a module that
is. Anything else (statistics of the benchmark, run helpers) belongs to ``semcl_benchmark`` or ``semcl_tools``.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

from semcl_tools.repository import CONFIGS, ROOT
from semcl_tools.zoo_export import bundle_files

PACKAGE = "semcl_components"
ZIPPED = f"scripts/{PACKAGE}/"


def module_name(relative: str) -> str:
    """``semcl_components.a.b`` of the file ``a/b.py`` (``a/__init__.py``: ``semcl_components.a``)."""
    parts = [PACKAGE, *Path(relative).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package's modules that the module ``name`` (file ``path``) imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            source = ".".join(p for p in (base, node.module or "") if p)
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)  # `from . import losses`
    return {module for module in found if module in modules}


def unreachable_modules(package: Path, configs: Path) -> list[str]:
    """Modules of ``package`` that no config reaches (by name, or by imports of a module it names), sorted."""
    files = {module_name(p.relative_to(package).as_posix()): p for p in package.rglob("*.py")}
    text = "\n".join(p.read_text(encoding="utf-8") for p in configs.iterdir() if p.suffix in (".yaml", ".json"))
    todo = set()
    for reference in re.findall(rf"\b{PACKAGE}(?:\.\w+)*", text):
        parts = reference.split(".")
        todo.add(next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in files))
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        parents = {".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1)}  # their __init__ runs first
        todo |= parents | imported_modules(files[name], name, set(files))
    return sorted(set(files) - reached)


def test_every_module_of_the_zipped_package_is_reachable_from_a_config():
    zipped = {name[len(ZIPPED):] for name in bundle_files() if name.startswith(ZIPPED)}
    source = ROOT / PACKAGE
    assert zipped == {p.relative_to(source).as_posix() for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    assert unreachable_modules(source, CONFIGS) == []


def test_a_module_that_no_config_reaches_is_found(tmp_path):
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "statistics.py").write_text("import numpy as np\n\n\ndef mean(x):\n    return np.mean(x)\n")
    (copy / "data" / "extra.py").write_text("from ..statistics import mean\n")  # reaches statistics, itself unreached
    assert unreachable_modules(copy, CONFIGS) == [f"{PACKAGE}.data.extra", f"{PACKAGE}.statistics"]


def test_scripts_are_entry_points_that_no_module_imports():
    scripts = {p.stem for p in (ROOT / "scripts").glob("*.py")}
    for path in [*ROOT.glob("semcl_*/**/*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"sys\.path\.(insert|append)\(.*scripts", text), path
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & scripts, f"{path} imports a script: {names}"
