"""The project's packages stack one way and no module imports itself back, read from the source (nothing is run).

``scripts -> semcl_benchmark -> semcl_tools -> semcl_components -> semcl_phantoms``: each imports only those to its
right. The phantom simulator (``semcl_phantoms``) is at the bottom: it needs nothing of the method, and the bundle's
runtime imports it when it writes the embedded demonstration data.
"""

from __future__ import annotations

from semcl_tools.import_graph import find_cycle, import_graph, package_modules
from semcl_tools.repository import ROOT

LAYERS = ("scripts", "semcl_benchmark", "semcl_tools", "semcl_components", "semcl_phantoms")
"""The project's packages (and the entry points' folder), each allowed to import only those after it."""


def project_graph() -> dict[str, set[str]]:
    modules = {}
    for layer in LAYERS:
        modules.update(package_modules(ROOT / layer))
    return import_graph(modules)


def imports_between(graph: dict[str, set[str]], importer: str, imported: tuple[str, ...]) -> list[str]:
    """``a -> b`` for each module ``a`` of the package ``importer`` that imports a module ``b`` of ``imported``."""
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a.split(".")[0] == importer
        for b in targets
        if b.split(".")[0] in imported
    )


def test_the_graph_holds_every_package_and_their_imports():
    graph = project_graph()
    assert {name.split(".")[0] for name in graph} == set(LAYERS)
    # the edges the checks below rely on are seen, relative and absolute ones
    assert "semcl_phantoms.realistic_painter" in graph["semcl_phantoms.realistic_phantom"]
    assert any(b.startswith("semcl_components.") for b in graph["semcl_benchmark.step"])


def test_no_module_takes_part_in_an_import_cycle():
    assert find_cycle(project_graph()) is None


def test_the_simulator_imports_nothing_from_the_other_packages():
    assert imports_between(project_graph(), "semcl_phantoms", LAYERS[:-1]) == []


def test_semcl_components_imports_nothing_from_the_tools_or_the_benchmark():
    assert imports_between(project_graph(), "semcl_components", ("semcl_tools", "semcl_benchmark", "scripts")) == []


def test_of_semcl_components_only_the_bundle_runtime_imports_the_simulator():
    """The method needs no phantoms; the runtime writes them as the default dataset (inside a function: lazily)."""
    edges = imports_between(project_graph(), "semcl_components", ("semcl_phantoms",))
    assert edges, "the runtime's import of the simulator is not seen"
    assert [edge for edge in edges if not edge.startswith("semcl_components.bundle_runtime.")] == []


def test_every_package_imports_only_the_layers_below_it():
    graph = project_graph()
    upward = [edge for i, layer in enumerate(LAYERS) for edge in imports_between(graph, layer, LAYERS[:i])]
    assert upward == []


def test_a_cycle_is_found_in_a_synthetic_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "numpy"}}) is None  # a diamond is no cycle


def test_a_cycle_through_a_lazy_and_a_type_checking_import_is_found(tmp_path):
    """The form the simulator's cycle had: one side imports under TYPE_CHECKING, the other inside a function."""
    package = tmp_path / "sim"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "shapes.py").write_text("import numpy as np\n")
    (package / "body.py").write_text(
        "from typing import TYPE_CHECKING\n\nfrom . import shapes\n\nif TYPE_CHECKING:\n"
        "    from .phantom import _Painter\n"
    )
    (package / "phantom.py").write_text("def generate():\n    from .body import paint_body\n")
    graph = import_graph(package_modules(package))
    assert graph["sim.body"] == {"sim.shapes", "sim.phantom"}
    assert find_cycle(graph) == ["sim.body", "sim.phantom", "sim.body"]
    (package / "body.py").write_text("from .shapes import np\n")  # the cycle broken
    assert find_cycle(import_graph(package_modules(package))) is None
