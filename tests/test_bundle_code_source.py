"""Where the bundle's code comes from (issue 35 item 1): the installed ``semcl_components``, else the copy in the
bundle's own ``scripts/`` folder (a model-zoo zip), and nothing else.

A dataset is data: a folder named on the command line (``--input_path``, ``--labels_json``, ...) or the working
directory may hold ``scripts/semcl_components/__init__.py``, and it must never run. Each planted package here writes a
marker file when imported. The runs go through the real entry point (``python -m monai.bundle run``), wrapped only to
hide the installed package (a model-zoo user has none) and to print which ``semcl_components`` the workflow used.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import BUNDLE_DIR, CONFIGS, TINY_INFERENCE_ARGS, run_captured

REPOSITORY_PACKAGE = Path(__file__).resolve().parents[1] / "semcl_components"

ENTRY_POINT = """
import atexit, importlib.util, runpy, sys

if sys.argv[1] == "zoo":  # a model-zoo user: semcl_components is not installed
    sys.meta_path[:] = [f for f in sys.meta_path if "semcl_components" not in getattr(f, "__module__", "")]
    assert importlib.util.find_spec("semcl_components") is None, "the installed package is still found"
atexit.register(lambda: print("semcl_components used:", getattr(sys.modules.get("semcl_components"), "__file__", None)))
sys.argv = ["monai.bundle", *sys.argv[2:]]
runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
"""
"""``python -c ENTRY_POINT installed|zoo ARGS``: ``python -m monai.bundle ARGS``, reporting the package it used."""

IN_PROCESS = """
import importlib.util, sys
from monai.bundle import ConfigParser

sys.meta_path[:] = [f for f in sys.meta_path if "semcl_components" not in getattr(f, "__module__", "")]
assert importlib.util.find_spec("semcl_components") is None
parser = ConfigParser()
parser.read_config(sys.argv[1])
parser["bundle_root"] = sys.argv[2]  # as the zoo's verify_bundle.py and MONAI Label set it
print("semcl_components used:", parser.get_parsed_content("semcl_components").__file__)
"""
"""A Python caller (the zoo's CI) in a zoo user's environment, from another folder, naming only ``bundle_root``."""


PLANTED = """
import importlib, os, sys

open({marker!r}, "w").write("imported")
# then hand over to the next semcl_components on sys.path, so that the run goes on as usual (exit 0, a segmentation)
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
del sys.modules[__name__]
sys.modules[__name__] = importlib.import_module(__name__)
"""


def plant(folder: Path, markers: Path) -> None:
    """``folder/scripts/semcl_components/__init__.py`` that records its import in ``markers/<folder name>`` and then
    passes the import on (the issue's case: nothing shows that it ran)."""
    package = folder / "scripts" / "semcl_components"
    package.mkdir(parents=True)
    package.joinpath("__init__.py").write_text(PLANTED.format(marker=str(markers / folder.name)))


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, Path]:
    """A dataset ``data/ds`` (an image in ``imagesTs/``, a ``dataset.json``), a working directory ``cwd``; each of
    ``data/ds``, ``data`` (two levels above ``ds/dataset.json``) and ``cwd`` holds a planted package."""
    markers = tmp_path / "markers"
    markers.mkdir()
    dataset, cwd = tmp_path / "data" / "ds", tmp_path / "cwd"
    (dataset / "imagesTs").mkdir(parents=True)
    cwd.mkdir()
    for folder in (dataset, dataset.parent, cwd):
        plant(folder, markers)
    image = dataset / "imagesTs" / "x.nii.gz"
    volume = np.random.default_rng(0).integers(-200, 300, (32, 32, 32)).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([1.5, 1.5, 1.5, 1.0])), image)
    labels = {"0": "background", "1": "liver", "2": "spleen"}
    (dataset / "dataset.json").write_text(json.dumps({"labels": labels}))
    return {"markers": markers, "cwd": cwd, "image": image, "labels": dataset / "dataset.json", "out": tmp_path / "out"}


def infer_command(mode: str, config: str, data: dict[str, Path], *extra: str) -> list:
    """``python -m monai.bundle run`` of ``config`` on the planted dataset's image, through ``ENTRY_POINT``."""
    return [
        sys.executable,
        "-c",
        ENTRY_POINT,
        mode,
        "run",
        "--config_file",
        config,
        "--input_path",
        data["image"],
        "--labels_json",
        data["labels"],
        "--load_pretrain",
        "false",
        "--output_dir",
        data["out"],
        *TINY_INFERENCE_ARGS,
        *extra,
    ]


def infer(mode: str, config: str, data: dict[str, Path], cwd: Path, *extra: str) -> str:
    """Segment the planted dataset's image with ``config`` from ``cwd``; the output, checked for success."""
    result = run_captured(infer_command(mode, config, data, *extra), cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (data["out"] / "x_seg.nii.gz").is_file(), output[-4000:]
    assert sorted(p.name for p in data["markers"].iterdir()) == [], "a planted package ran"
    return output


def used_package(output: str) -> Path:
    """The ``__init__.py`` of the ``semcl_components`` the run used, as the wrapper printed it."""
    lines = [line for line in output.splitlines() if line.startswith("semcl_components used: ")]
    assert len(lines) == 1, output[-4000:]
    return Path(lines[0].split(": ", 1)[1]).resolve()


def zoo_bundle(folder: Path) -> Path:
    """The bundle as the model-zoo zip unpacks it: configs and ``scripts/semcl_components`` (no weights needed)."""
    from semcl_tools.zoo_export import bundle_files

    bundle = folder / BUNDLE_DIR.name
    for name, source in bundle_files().items():
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, bundle / name)
    return bundle


@pytest.mark.slow
def test_a_dataset_folder_and_the_working_directory_never_supply_code(planted):
    """The installed package is used; the packages planted in the dataset, above it and in the working directory are
    never imported (they used to be put first on sys.path and run: exit 0, a normal segmentation)."""
    output = infer("installed", str(CONFIGS / "inference.yaml"), planted, planted["cwd"], "--bundle_root", BUNDLE_DIR)
    assert used_package(output) == REPOSITORY_PACKAGE / "__init__.py"


@pytest.mark.slow
def test_a_zoo_bundle_uses_its_own_copy_from_any_working_directory(planted, tmp_path):
    """Without an installed package, the bundle's ``scripts/semcl_components`` supplies the code, from another
    working directory (which holds a planted package) naming the bundle with ``--bundle_root``, and from the bundle
    folder (the zoo's convention)."""
    bundle = zoo_bundle(tmp_path / "zoo")
    own_copy = bundle / "scripts" / "semcl_components" / "__init__.py"
    output = infer("zoo", str(bundle / "configs" / "inference.yaml"), planted, planted["cwd"], "--bundle_root", bundle)
    assert used_package(output) == own_copy
    shutil.rmtree(planted["out"])
    output = infer("zoo", "configs/inference.yaml", planted, bundle)
    assert used_package(output) == own_copy


def test_a_working_directory_that_is_not_the_bundle_stops_the_run_before_supplying_code(planted, tmp_path):
    """Without an installed package and without ``--bundle_root``, a working directory without ``configs/metadata.json``
    (which holds a planted package) is not taken for the bundle: the run stops, naming the file and the option."""
    bundle = zoo_bundle(tmp_path / "zoo")
    result = run_captured(infer_command("zoo", str(bundle / "configs" / "inference.yaml"), planted), cwd=planted["cwd"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{planted['cwd']} is not the bundle folder (no configs/metadata.json)" in output, output[-3000:]
    assert "--bundle_root" in output
    assert sorted(p.name for p in planted["markers"].iterdir()) == [], "a planted package ran"


def test_a_python_caller_naming_bundle_root_finds_the_zoo_bundles_copy(tmp_path):
    """The zoo's CI parses the configs in its own process from another folder, setting only ``bundle_root``."""
    bundle = zoo_bundle(tmp_path / "zoo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for config in ("inference.yaml", "train.yaml", "pretrain.yaml"):
        command = [sys.executable, "-c", IN_PROCESS, bundle / "configs" / config, bundle]
        result = run_captured(command, cwd=elsewhere)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        assert used_package(result.stdout) == bundle / "scripts" / "semcl_components" / "__init__.py"
