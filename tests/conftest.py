"""Shared fixtures: determinism for component tests; for the bundle tests a tiny phantom dataset, a bundle runner and
tiny trained outputs.

The bundle workflows run as ``python -m monai.bundle run`` subprocesses from a scratch working directory (never the
bundle folder), with every output folder overridden, so nothing is written into the repository. Runs that several
tests read (a pretrained encoder, a trained model) are made once per session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundles" / "abdomen_ct_semcl_segmentation"
CONFIGS = BUNDLE_DIR / "configs"

# ---------------------------------------------------------------------------------------------------------------------
# the model zoo's own CI scripts, settings and metadata schema, unmodified: the tests run them from a folder outside
# the repository and never copy them into the project (``scripts/get_zoo_ci.sh`` fetches them; ``zoo_ci`` fixture)
# ---------------------------------------------------------------------------------------------------------------------

ZOO_SCHEMA_NAME = "meta_schema_20240725.json"
"""The schema that metadata.json's ``schema`` URL names, as the zoo's CI validates against it."""
ZOO_CI_REQUIRED = ("ci/verify_bundle.py", f"schema/{ZOO_SCHEMA_NAME}")
"""A folder counts as the zoo's CI only if it holds these files."""
SHARED_ZOO_CI = Path(__file__).resolve().parents[2] / "shared" / "zoo-ci"
"""``shared/zoo-ci`` beside the repository (see its ``SOURCE.md``), where the development machines keep it."""


def is_ci(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``CI`` is ``true`` or ``1`` (any case) in ``env`` (default: this process's environment)."""
    env = os.environ if env is None else env
    return env.get("CI", "").strip().lower() in ("true", "1")


def zoo_ci_cache(env: Mapping[str, str] | None = None) -> Path:
    """The user cache folder ``scripts/get_zoo_ci.sh`` downloads into: ``${XDG_CACHE_HOME:-~/.cache}/semcl/zoo-ci``."""
    env = os.environ if env is None else env
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "semcl" / "zoo-ci"


def zoo_ci_candidates(env: Mapping[str, str] | None = None, shared: Path = SHARED_ZOO_CI) -> list[Path]:
    """The folders looked in, in order: ``$SEMCL_ZOO_CI`` alone if set, else ``shared`` and then the user cache."""
    env = os.environ if env is None else env
    if env.get("SEMCL_ZOO_CI"):
        return [Path(env["SEMCL_ZOO_CI"])]
    return [shared, zoo_ci_cache(env)]


def holds_zoo_ci(folder: Path) -> bool:
    """Whether ``folder`` holds the zoo's CI: every file of ``ZOO_CI_REQUIRED``."""
    return all((folder / name).is_file() for name in ZOO_CI_REQUIRED)


def find_zoo_ci(env: Mapping[str, str] | None = None, shared: Path = SHARED_ZOO_CI) -> Path | None:
    """The first of ``zoo_ci_candidates`` that holds the zoo's CI, or ``None``."""
    return next((folder for folder in zoo_ci_candidates(env, shared) if holds_zoo_ci(folder)), None)


def require_zoo_ci(env: Mapping[str, str] | None = None, shared: Path = SHARED_ZOO_CI) -> Path:
    """``find_zoo_ci``'s folder; when there is none, skip the test, naming where it looked and how to get it.

    Under ``CI=true`` (``is_ci``) the test fails instead, so that CI never skips the zoo's checks silently.
    """
    found = find_zoo_ci(env, shared)
    if found is not None:
        return found
    env = os.environ if env is None else env
    looked = ", ".join(str(folder) for folder in zoo_ci_candidates(env, shared))
    if env.get("SEMCL_ZOO_CI"):
        looked += " (SEMCL_ZOO_CI is set, so only there)"
    needs = " and ".join(ZOO_CI_REQUIRED)
    if is_ci(env):
        pytest.fail(f"CI=true but the model zoo's CI ({needs}) is in none of: {looked}", pytrace=False)
    pytest.skip(
        f"the model zoo's CI ({needs}) is in none of: {looked}; fetch it with `bash scripts/get_zoo_ci.sh` "
        "(network) or set SEMCL_ZOO_CI to a folder holding it"
    )


ZOO_CI = find_zoo_ci() or zoo_ci_candidates()[0]
"""The zoo CI folder found at import time (else the first place looked in); tests take the ``zoo_ci`` fixture."""
ZOO_SCHEMA = ZOO_CI / "schema" / ZOO_SCHEMA_NAME
"""``ZOO_SCHEMA_NAME`` in ``ZOO_CI``; tests take the ``zoo_schema`` fixture, which skips or fails when it is absent."""


@pytest.fixture(scope="session")
def zoo_ci() -> Path:
    """The model zoo's CI folder (``require_zoo_ci``): skips every test that takes it when absent, fails under CI."""
    return require_zoo_ci()


@pytest.fixture(scope="session")
def zoo_schema(zoo_ci: Path) -> Path:
    """The metadata schema the zoo's CI validates against, in the ``zoo_ci`` folder (so nothing is downloaded)."""
    return zoo_ci / "schema" / ZOO_SCHEMA_NAME


# a network small enough for 2 CPU threads: 8 filters, 3 resolution levels (train/inference: blocks_up one shorter)
TINY_ENCODER_ARGS = ["--init_filters", "8", "--blocks_down", "[1,1,1]"]
TINY_NETWORK_ARGS = TINY_ENCODER_ARGS + ["--blocks_up", "[1,1]"]
TINY_TRAIN_ARGS = TINY_NETWORK_ARGS + ["--roi_size", "[32,32,32]", "--num_samples", "1", "--batch_size", "2"]
TINY_PRETRAIN_ARGS = TINY_ENCODER_ARGS + [
    "--patch_size",
    "[32,32,32]",
    "--view_size",
    "[24,24,24]",
    "--num_samples",
    "1",
    "--batch_size",
    "2",
    "--min_voxels",
    "8",
]
TINY_INFERENCE_ARGS = TINY_NETWORK_ARGS + ["--roi_size", "[32,32,32]", "--sw_batch_size", "1"]


def config_arg(*names: str) -> str:
    """The ``--config_file`` value for one config or an overlay list, e.g. ``config_arg("train", "evaluate")``."""
    paths = [str(CONFIGS / f"{name}.yaml") for name in names]
    return paths[0] if len(paths) == 1 else "[" + ",".join(f"'{p}'" for p in paths) + "]"


@dataclass
class BundleRun:
    """A finished ``monai.bundle`` subprocess: its exit code and its combined stdout/stderr."""

    returncode: int
    log: str
    log_file: Path


def bundle_env() -> dict[str, str]:
    """The subprocess environment: one intra-op thread, which on a shared 2-core machine is 10-20x faster than two."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_captured(
    command: Sequence, cwd: Path, env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run ``command`` (items made strings) and capture its output, decoded as UTF-8 whatever the locale."""
    return subprocess.run(
        [str(item) for item in command],
        cwd=cwd,
        env=bundle_env() if env is None else env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


def bundle_command(subcommand: str, configs: Sequence[str], args: Sequence[str]) -> list[str]:
    """``python -m monai.bundle <subcommand> --config_file <configs> --bundle_root <bundle> <args>`` with this
    interpreter; ``--bundle_root`` is the bundle folder (the configs' parent) unless ``args`` names one."""
    args = list(map(str, args))
    bundle_root = [] if "--bundle_root" in args else ["--bundle_root", str(BUNDLE_DIR)]
    command = [sys.executable, "-m", "monai.bundle", subcommand, "--config_file", config_arg(*configs)]
    return [*command, *bundle_root, *args]


SLOW_FIXTURES = frozenset({"run_bundle", "exported"})
"""A test that uses one of these (directly or through another fixture) runs a bundle workflow as a subprocess."""
SLOW_MARKERS = ("zoo", "monailabel", "multiprocess")
MEASURED_TIMES: dict[str, float] = {}
"""Durations (s) that tests measure on the way (``record_time``); the terminal summary lists them."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that runs a bundle workflow or carries one of ``SLOW_MARKERS``.

    ``pytest -m "not slow"`` is then the fast path for component work, without a test having to remember the mark.
    """
    for item in items:
        uses_workflow = SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if uses_workflow or any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def record_time() -> Callable[[str, float], None]:
    """``record_time(what, seconds)``: keep a measured duration for the terminal summary."""
    return MEASURED_TIMES.__setitem__


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """List the durations that tests measured (MONAI Label start-up, inference, training), in every run's output."""
    if MEASURED_TIMES:
        terminalreporter.section("measured times")
        for what, seconds in MEASURED_TIMES.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")


@pytest.fixture
def unsized_protocol(tmp_path: Path) -> Path:
    """A protocol file with the size ``unsized``: a v3-style cascade size (v3_tiny's data and draws) without stage-2
    training or pretraining settings, whose runs cannot be planned yet."""
    path = tmp_path / "unsized.yaml"
    path.write_text("""
sizes:
  unsized:
    data: {preset: realistic, num: 14, size: [32, 32, 24], seed: 0}
    draws: {design: v3, test: 4, validation: 1, pool: 2, labelled: 2}
    stage1_pixdim: 22.5
    network: {init_filters: 8, blocks_down: [1, 1, 2, 2], blocks_up: [1, 1, 1]}
    finetune: {max_epochs: 2, val_interval: 1, early_stop_patience: 1, roi_size: [16, 16, 16], num_samples: 1,
               batch_size: 2, learning_rate: 0.005}
    pretrain: {}
    arm_settings: {scratch: {stage: stage1}}
    arms: [scratch]
    settings: [finetune_1]
    seeds: [0]
""", encoding="utf-8")
    return path


@pytest.fixture
def deterministic():
    """Seed MONAI, torch and numpy for one test (``set_determinism(0)``) and unseed afterwards."""
    from monai.utils import set_determinism

    set_determinism(seed=0)
    yield
    set_determinism(seed=None)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working directory of every bundle subprocess: a scratch folder, not the bundle folder."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="session")
def run_bundle(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., BundleRun]:
    """Run ``python -m monai.bundle run`` on configs with args; ``expect_success`` fails the test with the log."""
    logs = tmp_path_factory.mktemp("logs")

    def _run(
        configs: Sequence[str],
        args: Sequence[str],
        expect_success: bool = True,
        timeout: float = 300,
        subcommand: str = "run",
    ) -> BundleRun:
        command = bundle_command(subcommand, configs, args)
        log_file = logs / f"run_{len(list(logs.iterdir())):03d}.log"
        with open(log_file, "w") as out:
            returncode = subprocess.run(
                command, cwd=workdir, env=bundle_env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        result = BundleRun(returncode, log_file.read_text(encoding="utf-8", errors="replace"), log_file)
        if expect_success and returncode != 0:
            pytest.fail(f"{' '.join(command)} exited with {returncode}; last lines:\n{result.log[-4000:]}")
        return result

    return _run


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tests`` phantom set (8 simple phantoms of 32^3 at the bundle's pixdim, so no resampling) in MSD layout.

    Splits: pretrain 2, finetune_1/2/4, validation 1, test 1.
    """
    from semcl_phantoms.phantoms import write_phantom_set

    folder = tmp_path_factory.mktemp("phantoms") / "dataset"
    write_phantom_set(folder, "tests", preview=False, verbose=False)
    return folder


@dataclass
class RunOutputs:
    """Folders of a finished session-scoped run, and its result."""

    ckpt_dir: Path
    output_dir: Path
    run: BundleRun


def _session_run(
    run_bundle, tmp_path_factory: pytest.TempPathFactory, name: str, configs: list[str], args: list
) -> RunOutputs:
    """Run a bundle workflow once into fresh ``<tmp>/<name>/models`` and ``<tmp>/<name>/eval`` folders."""
    root = tmp_path_factory.mktemp(name)
    ckpt_dir, output_dir = root / "models", root / "eval"
    run = run_bundle(configs, ["--ckpt_dir", ckpt_dir, "--output_dir", output_dir, *args])
    return RunOutputs(ckpt_dir, output_dir, run)


@pytest.fixture(scope="session")
def pretrained_pool(run_bundle, phantom_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> RunOutputs:
    """Semantic contrastive pretraining, ``pool`` mode, 2 epochs: ``<ckpt_dir>/pretrained_encoder.pt``.

    The embedding quality is measured after every epoch.
    """
    args = [
        "--dataset_dir",
        phantom_dataset,
        "--max_epochs",
        "2",
        "--embedding_mode",
        "pool",
        "--embedding_quality_interval",
        "1",
        *TINY_PRETRAIN_ARGS,
    ]
    return _session_run(run_bundle, tmp_path_factory, "pretrain_pool", ["pretrain"], args)


@pytest.fixture(scope="session")
def trained_model(run_bundle, phantom_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> RunOutputs:
    """Segmentation training from random initialisation, 2 epochs, validation every epoch: ``<ckpt_dir>/model.pt``."""
    args = ["--dataset_dir", phantom_dataset, "--max_epochs", "2", "--val_interval", "1", *TINY_TRAIN_ARGS]
    return _session_run(run_bundle, tmp_path_factory, "train_scratch", ["train"], args)


def write_dicom_series(
    volume: np.ndarray, spacing: np.ndarray, origin: np.ndarray, direction: np.ndarray, folder: Path, series: int = 2
) -> None:
    """Write ``volume`` (x, y, z) as one CT series of axial .dcm slices with ITK/GDCM; geometry in LPS millimetres.

    ``series`` is the last part of the series instance UID; files are named after it, so two series can share a folder.
    """
    import itk

    folder.mkdir(parents=True, exist_ok=True)
    uid = "1.2.826.0.1.3680043.2.1125.7"
    for k in range(volume.shape[2]):
        position = origin + k * spacing[2] * direction[:, 2]
        slice_image = itk.image_from_array(np.ascontiguousarray(volume[:, :, k].T[None]))  # ITK arrays are (z, y, x)
        slice_image.SetSpacing(spacing.tolist())
        slice_image.SetOrigin(position.tolist())
        slice_image.SetDirection(itk.matrix_from_array(direction))
        tags = {
            "0008|0060": "CT",
            "0020|000d": f"{uid}.1",
            "0020|000e": f"{uid}.{series}",
            "0008|0018": f"{uid}.{series}.3.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])),
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
        }
        dictionary = slice_image.GetMetaDataDictionary()
        for tag, value in tags.items():
            dictionary[tag] = value
        dicom_io = itk.GDCMImageIO.New()
        dicom_io.KeepOriginalUIDOn()
        filename = str(folder / f"series{series}_slice_{k:03d}.dcm")
        itk.ImageFileWriter[type(slice_image)].New(Input=slice_image, FileName=filename, ImageIO=dicom_io).Update()


EXPORT = Path(__file__).resolve().parents[1] / "scripts" / "export_bundle.py"
TINY_EXPORT = [
    "--pretrain-epochs",
    "1",
    "--train-epochs",
    "1",
    "--set",
    "patch_size",
    "[32,32,32]",
    "view_size",
    "[24,24,24]",
    "min_voxels",
    "8",
    "num_samples",
    "1",
    "roi_size",
    "[32,32,32]",
    "refine_crop_size",
    "[24,24,24]",
]


@pytest.fixture(scope="session")
def exported(phantom_dataset, tmp_path_factory) -> dict:
    """One export with tiny training (the bundle's own network, 1 epoch each): the zip and the weights beside it."""
    out = tmp_path_factory.mktemp("dist")
    work = tmp_path_factory.mktemp("export_work")
    command = [
        sys.executable,
        EXPORT,
        "--url",
        f"file://{out}",
        "--out",
        out,
        "--workdir",
        work,
        "--dataset_dir",
        phantom_dataset,
        *TINY_EXPORT,
    ]
    result = run_captured(command, cwd=work, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"zip": out / f"{BUNDLE_DIR.name}_v0.1.0.zip", "out": out, "work": work}


ATLAS = {"stage": "atlas", "test": {"cases": ["t.nii.gz"], "classes": ["liver"], "dice": [[0.5]]}}
"""What an atlas stage measures, at its smallest (the stage itself is tested apart)."""


def without_data(benchmark, monkeypatch) -> None:
    """No phantoms written: the seeds' datalist is a one-case stub."""
    datalist = {"finetune_1": [{"image": "a.nii.gz"}], "pretrain": [], "validation": [], "test": [{"image": "t.nii.gz"}]}
    monkeypatch.setattr(benchmark.stages, "data", lambda seeds: None)
    monkeypatch.setattr(benchmark.planner.data, "datalist", lambda seed: datalist)
