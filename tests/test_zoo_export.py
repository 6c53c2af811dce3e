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


# ---------------------------------------------------------------------------------------------------------------------
# --set (issue 35 item 12): a key the export does not pass on is refused, before any work, naming it and the known keys
# ---------------------------------------------------------------------------------------------------------------------


KNOWN_SET_KEYS = ("patch_size", "view_size", "min_voxels", "num_samples", "roi_size", "train_key", "refine_crop_size")
"""What ``--set`` passes on: the pretraining runs' crop settings, the training runs' (``roi_size`` also to the test),
stage 2's crop size."""


def export_script(tmp_path, *args: str):
    """``python scripts/export_bundle.py`` with ``args`` (weights from an empty folder, so nothing could train)."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "weights").mkdir(exist_ok=True)
    script = Path(__file__).resolve().parents[1] / "scripts" / "export_bundle.py"
    common = ["--url", "file:///x", "--out", tmp_path / "out", "--workdir", tmp_path / "work"]
    command = [
        sys.executable,
        script,
        *common,
        "--dataset_dir",
        tmp_path / "data",
        "--weights-from",
        tmp_path / "weights",
    ]
    return subprocess.run(
        [str(c) for c in [*command, *args]], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "pairs, named, suggestion",
    [
        (["roi_sise", "[32,32,32]"], "roi_sise", "roi_size"),
        (["patch_size", "[32,32,32]", "max_epochs", "3"], "max_epochs", None),
        (["num_sample", "1", "view_size", "[24,24,24]"], "num_sample", "num_samples"),
    ],
)
def test_an_unknown_set_key_is_refused_naming_it_and_the_known_keys(tmp_path, pairs, named, suggestion):
    result = export_script(tmp_path, "--set", *pairs)
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert f"--set {named!r} is not a setting the export passes on" in message
    assert (f"did you mean {suggestion!r}?" in message) == (suggestion is not None)
    assert all(key in message for key in KNOWN_SET_KEYS)
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()  # refused before any work


def test_known_set_keys_are_taken():
    from semcl_tools.zoo_export import PRETRAIN_SETTINGS, REFINE_SETTINGS, SET_KEYS, TRAIN_SETTINGS, parse_args

    assert set(SET_KEYS) == set(PRETRAIN_SETTINGS) | set(TRAIN_SETTINGS) | set(REFINE_SETTINGS) == set(KNOWN_SET_KEYS)
    pairs = [item for key in SET_KEYS for item in (key, "1")]
    args = parse_args(["--url", "file:///x", "--dataset_dir", "/data", "--set", *pairs])
    assert args.set == pairs
