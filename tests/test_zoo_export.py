"""The export's rules that need no export: which package versions metadata.json pins for the model zoo's CI."""

from __future__ import annotations

import pytest

from semcl_tools.zoo_export import ZOO_PYTHON, ZOO_PYTHON_RELEASES, exported_metadata, pinned_version


def test_a_release_that_supports_the_zoo_python_is_pinned_as_installed():
    assert pinned_version("nibabel", "5.4.2", ">=3.10") == "5.4.2"
    assert pinned_version("fire", "0.7.1", None) == "0.7.1"  # no Requires-Python: any Python


def test_a_release_that_needs_a_newer_python_is_pinned_to_the_newest_one_for_the_zoo_python():
    assert ZOO_PYTHON == "3.10"
    assert pinned_version("numpy", "2.4.6", ">=3.11") == ZOO_PYTHON_RELEASES["numpy"] == "2.2.6"


def test_a_release_that_needs_a_newer_python_and_has_no_known_alternative_stops_the_export():
    with pytest.raises(SystemExit, match=r"newlib 3.0 requires Python >=3.12.*Python 3.10.*ZOO_PYTHON_RELEASES"):
        pinned_version("newlib", "3.0", ">=3.12")


def test_exported_metadata_pins_only_releases_that_install_on_the_zoo_python():
    """With this environment's packages (numpy, scipy, pillow, matplotlib may need Python 3.11 here)."""
    from importlib.metadata import metadata, version

    from packaging.specifiers import SpecifierSet

    source = {"version": "0.1.0", "changelog": {"0.1.0": "x"}}
    result = exported_metadata(source, "0.2.0", "y", {"mean_dice": 0.5})
    pins = {"monai": result["monai_version"], "torch": result["pytorch_version"], "numpy": result["numpy_version"]}
    pins.update(result["required_packages_version"])
    for name, pinned in pins.items():
        requires = metadata(name).get("Requires-Python")
        if requires and not SpecifierSet(requires).contains(ZOO_PYTHON):
            assert pinned == ZOO_PYTHON_RELEASES[name], name
        else:
            assert pinned == version(name).split("+")[0], name  # what the export was tested with
    assert list(result["changelog"]) == ["0.2.0", "0.1.0"]
