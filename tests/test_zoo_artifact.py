"""The model-zoo artifact: export, download into an environment without this repository, weights, inference, and the
model zoo's own CI on it.

The zoo environment (``.venv-zoo`` in the repository root, reused while the bundle README's install lines are
unchanged) has only what the bundle README tells a zoo user to install: no ``semcl_components``. The zoo's CI scripts
run unmodified, from the folder of the ``zoo_ci`` fixture (``conftest.find_zoo_ci``: ``shared/zoo-ci`` beside the
repository or the cache of ``scripts/get_zoo_ci.sh``), on the exported zip and on the zip the zoo's release step makes
of it (``published_zip``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import EXPORT, ZOO_SCHEMA_NAME, bundle_env, run_captured

from semcl_tools.zoo_export import WEIGHTS

pytestmark = pytest.mark.zoo

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "abdomen_ct_semcl_segmentation"
NAME = BUNDLE.name
ZOO_VENV = Path(os.environ.get("SEMCL_ZOO_VENV", ROOT / ".venv-zoo"))


def readme_block_lines(marker: str, prefix: str) -> list[str]:
    """The lines of the bundle README's ``bash`` block after ``<!-- marker: ... -->``; each must start with ``prefix``."""
    text = (BUNDLE / "docs" / "README.md").read_text(encoding="utf-8")
    block = re.search(rf"<!-- {marker}:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"the bundle README has no {marker} block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert lines and all(line.startswith(prefix) for line in lines), lines
    return lines


def readme_install_lines() -> list[str]:
    """The ``pip install`` lines of the bundle README's zoo-install block."""
    return readme_block_lines("zoo-install", "pip install ")


def run(command: list, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``run_captured`` with the caller's environment as given (``None``: this process's, not the bundle one)."""
    return run_captured(command, cwd, env=dict(os.environ) if env is None else env, timeout=timeout)


def zoo_env() -> dict:
    """A zoo user's environment: no PYTHONPATH, nothing of the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


@pytest.fixture(scope="session")
def zoo_python() -> Path:
    """Python of the zoo environment, created from the README's install lines (or reused if they are unchanged)."""
    lines = readme_install_lines()
    python = ZOO_VENV / "bin" / "python"
    marker = ZOO_VENV / "installed-from-readme.txt"
    if not (python.is_file() and marker.is_file() and marker.read_text(encoding="utf-8") == "\n".join(lines)):
        shutil.rmtree(ZOO_VENV, ignore_errors=True)
        created = run([sys.executable, "-m", "venv", ZOO_VENV], cwd=ROOT)
        assert created.returncode == 0, created.stderr
        for line in lines:
            args = line.split()[2:]
            installed = run(
                [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *[a.strip('"') for a in args]],
                cwd=ROOT,
                env=zoo_env(),
                timeout=1800,
            )
            assert installed.returncode == 0, f"{line}:\n{installed.stdout[-2000:]}{installed.stderr[-3000:]}"
        marker.write_text("\n".join(lines))
    return python


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zip_is_one_bundle_folder_with_code_weights_hashes_and_pinned_metadata(exported):
    with zipfile.ZipFile(exported["zip"]) as archive:
        names = archive.namelist()
        assert all(name.startswith(f"{NAME}/") for name in names)
        inside = {name[len(NAME) + 1 :] for name in names}
        assert {
            "configs/inference.yaml",
            "configs/metadata.json",
            "docs/README.md",
            "LICENSE",
            "large_files.yml",
            "models/model.pt",
            "models/pretrained_encoder.pt",
            "models/refine/model.pt",
            "models/refine/pretrained_encoder.pt",
            "configs/train_refine.yaml",
            "configs/inference_cascade.yaml",
            "scripts/semcl_components/__init__.py",
            "scripts/semcl_components/networks/encoders.py",
            "scripts/semcl_phantoms/phantoms.py",  # the simulator that writes the demonstration data
        } <= inside
        assert not [n for n in inside if "__pycache__" in n or n.endswith((".lock", ".pyc"))]
        text = archive.read(f"{NAME}/configs/metadata.json").decode()
        large = yaml.safe_load(archive.read(f"{NAME}/large_files.yml"))
        weights = WEIGHTS  # both stages of the cascade
        shipped = {p: hashlib.sha256(archive.read(f"{NAME}/{p}")).hexdigest() for p in weights}
    metadata = json.loads(text)
    assert text == json.dumps(metadata, indent=4) + "\n"  # the zoo's 4-space format
    assert metadata["version"] in metadata["changelog"]
    assert not {"semcl_components", "semcl_phantoms"} & set(metadata["required_packages_version"])  # inside the bundle
    assert {"nibabel", "itk", "pytorch-ignite", "fire", "pyyaml", "pillow"} <= set(
        metadata["required_packages_version"]
    )
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in metadata["required_packages_version"].values())
    summary = json.loads((exported["work"] / "eval" / "test" / "evaluation_summary.json").read_text(encoding="utf-8"))
    assert metadata["eval_metrics"]["mean_dice"] == round(summary["metrics"]["val_mean_dice"], 4)
    assert len(metadata["eval_metrics"]["mean_dice_per_organ"]) == 8
    assert [entry["path"] for entry in large["large_files"]] == list(WEIGHTS)
    for entry in large["large_files"]:
        published = Path(entry["path"]).relative_to("models")  # laid out as under models/
        assert entry["hash_type"] == "sha256" and entry["hash_val"] == shipped[entry["path"]]
        assert entry["url"] == f"file://{exported['out']}/{published.as_posix()}"
        assert sha256(exported["out"] / published) == entry["hash_val"]  # the file to publish
    digest, name = (exported["out"] / f"{exported['zip'].name}.sha256").read_text(encoding="utf-8").split()
    assert (digest, name) == (sha256(exported["zip"]), exported["zip"].name)


README_SECTIONS = [
    "Model Overview",
    "Data",
    "Training configuration",
    "Input and Output",
    "Performance",
    "MONAI Bundle Commands",
    "System Configuration",
    "Limitations",
    "References",
    "License",
]


def test_zip_readme_stands_alone_and_states_the_shipped_weights_numbers(exported):
    with zipfile.ZipFile(exported["zip"]) as archive:
        inside = {name[len(NAME) + 1 :] for name in archive.namelist()}
        readme = archive.read(f"{NAME}/docs/README.md").decode()
        metadata = json.loads(archive.read(f"{NAME}/configs/metadata.json"))
    sections = re.findall(r"^## (.+)$", readme, re.M)
    assert sections == README_SECTIONS
    assert f"Mean Dice {metadata['eval_metrics']['mean_dice']:.3f} on the 1 phantom test volumes" in readme
    assert "No weights ship with a source checkout" not in readme
    # every bundle file the README names is in the zip (outputs the commands write aside)
    named = set(re.findall(r"`((?:configs|docs|scripts)/[\w./-]+?)`", readme))
    assert named and named <= inside | {"scripts/semcl_components", "scripts/semcl_phantoms"}, named - inside
    assert "$B" not in readme and "setup_env" not in readme and "RESULTS.md" not in readme


def test_exporting_the_same_weights_twice_gives_the_same_zip(exported, phantom_dataset, tmp_path):
    zips = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        result = run(
            [
                sys.executable,
                EXPORT,
                "--url",
                "https://example.org/v0.1.0",
                "--out",
                out,
                "--workdir",
                tmp_path / f"work_{attempt}",
                "--dataset_dir",
                phantom_dataset,
                "--weights-from",
                exported["out"],
                "--set",
                "roi_size",
                "[32,32,32]",
            ],
            cwd=tmp_path,
            env=bundle_env(),
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        zips.append((out / exported["zip"].name).read_bytes())
    assert zips[0] == zips[1]


def test_export_without_both_weight_files_is_refused(tmp_path, phantom_dataset):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"x")
    result = run(
        [
            sys.executable,
            EXPORT,
            "--url",
            "file:///x",
            "--out",
            tmp_path / "out",
            "--dataset_dir",
            phantom_dataset,
            "--weights-from",
            tmp_path / "models",
        ],
        cwd=tmp_path,
        env=bundle_env(),
    )
    assert result.returncode != 0 and "lacks pretrained_encoder.pt" in result.stderr


def infer(python: Path, config: str, cwd: Path, image: Path, out: Path, env: dict, *extra: str) -> np.ndarray:
    result = run(
        [
            python,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            config,
            "--input_path",
            image,
            "--output_dir",
            out,
            "--roi_size",
            "[32,32,32]",
            *extra,
        ],
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (prediction,) = sorted(out.rglob("*.nii.gz"))
    image_file = nib.load(str(prediction))
    return np.asarray(image_file.dataobj), image_file.affine


def test_zoo_user_downloads_fetches_weights_and_segments_from_any_folder(
    exported, zoo_python, phantom_dataset, tmp_path
):
    env = zoo_env()
    absent = run([zoo_python, "-c", "import semcl_components"], cwd=tmp_path, env=env)
    assert absent.returncode != 0  # nothing of the repository in the zoo environment
    downloads = tmp_path / "bundles"
    got = run(
        [
            zoo_python,
            "-m",
            "monai.bundle",
            "download",
            "--name",
            NAME,
            "--url",
            f"file://{exported['zip']}",
            "--bundle_dir",
            downloads,
        ],
        cwd=tmp_path,
        env=env,
    )
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    bundle = downloads / NAME
    for weights in (bundle / "models").glob("*.pt"):
        weights.unlink()
    fetched = run(
        [zoo_python, "-m", "monai.bundle", "download_large_files", "--bundle_path", bundle], cwd=tmp_path, env=env
    )
    assert fetched.returncode == 0, fetched.stdout[-3000:] + fetched.stderr[-3000:]
    assert sha256(bundle / "models" / "model.pt") == sha256(exported["out"] / "model.pt")

    image = phantom_dataset / json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))["test"][0]["image"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the zoo's convention (from the bundle folder, relative config path), and from another folder
    from_bundle = infer(zoo_python, "configs/inference.yaml", bundle, image, tmp_path / "seg_a", env)
    from_elsewhere = infer(
        zoo_python, str(bundle / "configs" / "inference.yaml"), elsewhere, image, tmp_path / "seg_b", env,
        "--bundle_root", str(bundle),
    )  # fmt: skip
    # the repository's bundle with the same weights
    repository = infer(
        Path(sys.executable),
        str(BUNDLE / "configs" / "inference.yaml"),
        elsewhere,
        image,
        tmp_path / "seg_c",
        bundle_env(),
        "--ckpt_dir",
        str(bundle / "models"),
        "--bundle_root",
        str(BUNDLE),
    )
    for labels, affine in (from_bundle, from_elsewhere):
        np.testing.assert_array_equal(labels, repository[0])
        np.testing.assert_allclose(affine, repository[1])
    assert set(np.unique(repository[0])) <= set(range(9))
    # the README's TorchScript export, with the bundle's paths and --bundle_root given from another folder
    exported_ts = run(
        [
            zoo_python,
            "-m",
            "monai.bundle",
            "ckpt_export",
            "network_def",
            "--filepath",
            tmp_path / "model.ts",
            "--ckpt_file",
            bundle / "models" / "model.pt",
            "--meta_file",
            bundle / "configs" / "metadata.json",
            "--config_file",
            bundle / "configs" / "inference.yaml",
            "--bundle_root",
            bundle,
        ],
        cwd=elsewhere,
        env=env,
    )
    assert exported_ts.returncode == 0, exported_ts.stdout[-3000:] + exported_ts.stderr[-3000:]
    assert (tmp_path / "model.ts").is_file()


def readme_download_lines() -> list[str]:
    """The lines of the bundle README's zoo-download block (download a released zip, run inference)."""
    return readme_block_lines("zoo-download", "python -m monai.bundle ")


@pytest.mark.parametrize("form", ["exported", "published"])
def test_readme_download_lines_segment_with_the_shipped_weights(
    form, request, exported, zoo_python, phantom_dataset, tmp_path
):
    """The README's download-and-run lines as written, in the zoo environment, on the exported zip and on the zip the
    zoo's release publishes (weights inside, no ``large_files.yml``): the same segmentation as the repository's bundle
    with those weights."""
    archive = exported["zip"] if form == "exported" else request.getfixturevalue("published_zip")
    image = phantom_dataset / json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))["test"][0]["image"]
    for line in readme_download_lines():
        line = line.replace("<release>", f"file://{archive.parent}").replace("ct.nii.gz", str(image))
        command = shlex.split(line.replace("<version>", archive.stem.rsplit("_v", 1)[1]))
        result = run([zoo_python, *command[1:]], cwd=tmp_path, env=zoo_env())
        assert result.returncode == 0, f"{line}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    (segmentation,) = sorted((tmp_path / "seg").rglob("*.nii.gz"))
    config, models = BUNDLE / "configs" / "inference.yaml", tmp_path / "bundles" / NAME / "models"
    repository = run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            config,
            "--input_path",
            image,
            "--output_dir",
            tmp_path / "repository",
            "--ckpt_dir",
            models,
            "--bundle_root",
            BUNDLE,
        ],
        cwd=tmp_path,
        env=bundle_env(),
    )
    assert repository.returncode == 0, repository.stdout[-3000:] + repository.stderr[-3000:]
    (expected,) = sorted((tmp_path / "repository").rglob("*.nii.gz"))
    labels = np.asarray(nib.load(str(segmentation)).dataobj)
    np.testing.assert_array_equal(labels, np.asarray(nib.load(str(expected)).dataobj))
    np.testing.assert_allclose(nib.load(str(segmentation)).affine, nib.load(str(image)).affine, atol=1e-4)


def test_tampered_weights_are_refused_naming_the_file(exported, zoo_python, tmp_path):
    with zipfile.ZipFile(exported["zip"]) as archive:
        archive.extractall(tmp_path)
    weights = tmp_path / NAME / "models" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = run(
        [zoo_python, "-m", "monai.bundle", "download_large_files", "--bundle_path", tmp_path / NAME],
        cwd=tmp_path,
        env=zoo_env(),
    )
    assert result.returncode != 0
    assert "model.pt" in result.stderr and "check" in result.stderr.lower()


BUNDLE_CHECKS = """
import os, sys
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export

bundle, dataset, scratch = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, bundle)  # as the zoo's verify_bundle.py does: a Python caller's bundle code is found from there
path = lambda *p: os.path.join(bundle, *p)
common = dict(meta_file=path("configs", "metadata.json"), config_file=path("configs", "inference.yaml"),
              bundle_root=bundle)
ckpt_export(net_id="network_def", filepath=os.path.join(scratch, "model.ts"), ckpt_file=path("models", "model.pt"),
            **common)
scripted = torch.jit.load(os.path.join(scratch, "model.ts"), map_location="cpu")
parser = ConfigParser()
parser.read_config(common["config_file"])
parser.read_meta(common["meta_file"])
parser["bundle_root"] = bundle
network = parser.get_parsed_content("network_def")
network.load_state_dict(torch.load(path("models", "model.pt"), map_location="cpu", weights_only=True))
network.eval()
torch.manual_seed(0)
image = torch.rand(1, 1, 32, 32, 32)
with torch.no_grad():
    difference = (scripted(image) - network(image)).abs().max().item()
print(f"torchscript max abs difference {difference:.2e}")
assert difference < 1e-4, difference
for config, kind in (("inference.yaml", "infer"), ("train.yaml", "train")):
    workflow = ConfigWorkflow(config_file=path("configs", config), meta_file=common["meta_file"],
                              logging_file=path("configs", "logging.conf"), workflow_type=kind, bundle_root=bundle,
                              dataset_dir=dataset)
    workflow.initialize()
    missing = workflow.check_properties()
    assert not missing, f"{config}: missing properties {missing}"
print("bundle checks passed")
"""


def test_zip_torchscript_matches_and_workflows_have_their_properties(exported, zoo_python, phantom_dataset, tmp_path):
    """What the bundle README claims beyond the zoo's CI, in the zoo environment, from another folder: the TorchScript
    export matches the checkpoint within 1e-4, and train and inference define MONAI's workflow properties."""
    with zipfile.ZipFile(exported["zip"]) as archive:
        archive.extractall(tmp_path / "models_path")
    bundle = tmp_path / "models_path" / NAME
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checks = run([zoo_python, "-c", BUNDLE_CHECKS, bundle, phantom_dataset, tmp_path], cwd=elsewhere, env=zoo_env())
    assert checks.returncode == 0, checks.stdout[-3000:] + checks.stderr[-3000:]
    assert "bundle checks passed" in checks.stdout


# ---------------------------------------------------------------------------------------------------------------------
# the model zoo's own CI (the zoo_ci fixture, unmodified), run on the exported zip and on the zip the zoo publishes
# ---------------------------------------------------------------------------------------------------------------------

OFFLINE = dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"), "http://127.0.0.1:9")
"""Proxies at a closed local port: a download the zoo's scripts would try (the schema, a weight) fails at once."""


def zoo_ci_run(python: Path, zoo_ci: Path, script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``python <zoo-ci>/ci/<script> <args>`` in a zoo user's environment, offline, writing nothing into zoo-ci."""
    result = run([python, zoo_ci / "ci" / script, *args], cwd=cwd, env={**zoo_env(), **OFFLINE})
    assert result.returncode == 0, f"{script} {args}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def zoo_models_folder(archive: Path, folder: Path, zoo_ci: Path) -> Path:
    """The zoo's ``models/`` folder holding ``archive``'s bundle, beside the zoo's ``model_info.json``."""
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)
    shutil.copyfile(zoo_ci / "models" / "model_info.json", folder / "model_info.json")
    return folder


RELEASE = """
import sys

sys.path.insert(0, sys.argv[1])
import update_model_info as release

# the upload to NGC needs credentials and network: the stub returns the address the zoo would record
release.upload_bundle = lambda bundle_name, version, **kwargs: f"https://example.invalid/{bundle_name}_v{version}.zip"
done, message = release.update_model_info(sys.argv[2], temp_dir=sys.argv[3], models_path=sys.argv[4])
print(message)
sys.exit(0 if done else 1)
"""


@pytest.fixture(scope="session")
def published_zip(exported, zoo_python, zoo_ci, tmp_path_factory) -> Path:
    """The zip as the zoo's release step publishes it: ``update_model_info`` of the zoo's ``ci/update_model_info.py``
    (unmodified, its NGC upload stubbed) on the bundle as a zoo pull request holds it, weights only named in
    ``large_files.yml``. It fetches the weights into a copy, removes ``large_files.yml``, zips the copy with ``zip``."""
    root = tmp_path_factory.mktemp("zoo_release")
    models = zoo_models_folder(exported["zip"], root / "models", zoo_ci)
    for entry in yaml.safe_load((models / NAME / "large_files.yml").read_text(encoding="utf-8"))["large_files"]:
        (models / NAME / entry["path"]).unlink()  # a pull request carries no weight files (check-added-large-files)
    (root / "release").mkdir()
    result = run([zoo_python, "-c", RELEASE, zoo_ci / "ci", NAME, root / "release", models], cwd=root, env=zoo_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    published = root / "release" / exported["zip"].name
    recorded = json.loads((models / "model_info.json").read_text(encoding="utf-8"))[published.stem]
    assert recorded["checksum"] == hashlib.sha1(published.read_bytes()).hexdigest()  # what the zoo's index lists
    return published


def test_published_zip_carries_the_shipped_weights_and_no_large_files_yml(exported, published_zip):
    with zipfile.ZipFile(published_zip) as published, zipfile.ZipFile(exported["zip"]) as original:
        names = set(published.namelist())
        assert f"{NAME}/large_files.yml" not in names
        for weights in WEIGHTS:
            assert published.read(f"{NAME}/{weights}") == original.read(f"{NAME}/{weights}")
        assert {n for n in original.namelist() if not n.endswith("large_files.yml")} <= names


@pytest.mark.parametrize("mode", ["min", "full"])
@pytest.mark.parametrize("form", ["exported", "published"])
def test_zoo_verify_bundle_passes(form, mode, request, exported, zoo_python, zoo_ci, tmp_path):
    """The zoo's premerge steps: ``prepare_schema.py`` (the schema placed where its download finds it, offline), then
    ``verify_bundle.py -m min`` (CPU premerge: files, weights from ``large_files.yml``, version and changelog against
    the zoo's ``model_info.json``, metadata against the schema) or full mode (GPU runners: also data shape, TorchScript).
    """
    archive = exported["zip"] if form == "exported" else request.getfixturevalue("published_zip")
    models = zoo_models_folder(archive, tmp_path / "models", zoo_ci)
    schema = json.loads((models / NAME / "configs" / "metadata.json").read_text(encoding="utf-8"))["schema"].rsplit("/", 1)[-1]
    assert schema == ZOO_SCHEMA_NAME
    shutil.copyfile(zoo_ci / "schema" / schema, models / schema)
    zoo_ci_run(zoo_python, zoo_ci, "prepare_schema.py", "-l", NAME, "-p", models, cwd=tmp_path)
    assert (models / NAME / "eval" / "schema.json").read_bytes() == (zoo_ci / "schema" / schema).read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    verified = zoo_ci_run(
        zoo_python,
        zoo_ci,
        "verify_bundle.py",
        "-b",
        NAME,
        "-p",
        models,
        *(["-m", mode] if mode == "min" else []),
        cwd=elsewhere,
    )
    assert "metadata format is verified correctly." in verified.stdout
    if mode == "full":
        assert "data shape is verified correctly." in verified.stdout
        assert "export weights into TorchScript module successfully." in verified.stdout


def python_310() -> list[str] | None:
    """A Python 3.10 interpreter (the zoo CI's), as a command; None if this machine has none."""
    candidates = [shutil.which("python3.10"), *sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    for candidate in filter(None, candidates):
        probe = run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"], cwd=Path.home())
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return [str(candidate)]
    return None


def test_metadata_pins_install_on_the_zoo_ci_python(exported, zoo_python, zoo_ci, tmp_path):
    """``get_bundle_requirements.py``'s requirements file, as the premerge job installs it (``ALLOW_MONAI_RC``,
    ``--pre``), resolves with wheels on Python 3.10: ``pip install --dry-run`` against PyPI, nothing installed.

    With a Python 3.10 interpreter on the machine, its own pip resolves (markers evaluated for 3.10); else this
    interpreter's pip with ``--python-version 3.10``.
    """
    models = zoo_models_folder(exported["zip"], tmp_path / "models", zoo_ci)
    env = {**zoo_env(), "ALLOW_MONAI_RC": "true"}
    written = run([zoo_python, zoo_ci / "ci" / "get_bundle_requirements.py", "-b", NAME, "-p", models], tmp_path, env)
    assert written.returncode == 0, written.stdout[-3000:] + written.stderr[-3000:]
    requirements = tmp_path / written.stdout.split()[-1]
    pins = requirements.read_text(encoding="utf-8").split()
    assert "numpy==2.4.6" not in pins and {"scipy==1.17.1", "pillow==13.0.0", "matplotlib==3.11.2"}.isdisjoint(pins)
    python = python_310()
    target = [] if python else ["--target", tmp_path / "target", "--python-version", "3.10", "--only-binary=:all:"]
    command = [
        *(python or [sys.executable]),
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--pre",
        *target,
    ]
    resolved = run([*command, "--report", tmp_path / "report.json", "-r", requirements], tmp_path, zoo_env(), 1200)
    assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    for pin in pins:
        name, _, pinned = pin.partition("==")
        if pinned:
            assert chosen[name.lower()] == pinned, pin


def zip_contents(archive: Path, folder: Path) -> tuple[Path, dict[str, int]]:
    """``archive`` unpacked into ``folder``: the bundle folder and each file's permission bits (as the zip has them)."""
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)
        modes = {info.filename[len(NAME) + 1 :]: info.external_attr >> 16 for info in zipped.infolist()}
    return folder / NAME, modes


def test_bundle_code_passes_the_zoo_code_format_checks(exported, zoo_ci, tmp_path):
    """isort, black and flake8 as the zoo's ``runtests.sh --codeformat`` runs them, with its setup.cfg and
    pyproject.toml (black ``--skip-magic-trailing-comma``), on the bundle folder of the zip."""
    bundle, _ = zip_contents(exported["zip"], tmp_path)
    settings, black = zoo_ci / "setup.cfg", zoo_ci / "pyproject.toml"
    commands = {
        "isort": [sys.executable, "-m", "isort", "--settings-path", settings, "--check", bundle],
        "black": [sys.executable, "-m", "black", "--config", black, "--skip-magic-trailing-comma", "--check", bundle],
        "flake8": [sys.executable, "-m", "flake8", "--config", settings, bundle, "--count", "--statistics"],
    }
    for tool, command in commands.items():
        result = run(command, cwd=tmp_path)
        assert result.returncode == 0, f"{tool}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


HOOK_TYPES = {
    "end-of-file-fixer": {"text"},
    "trailing-whitespace": {"text"},
    "check-yaml": {"yaml"},
    "check-docstring-first": {"python"},
    "check-executables-have-shebangs": {"text", "executable"},
    "check-toml": {"toml"},
    "check-case-conflict": set(),
    "check-added-large-files": set(),
    "detect-private-key": {"text"},
    "pretty-format-json": {"json"},
    "mixed-line-ending": {"text"},
    "forbid-new-submodules": set(),
}
"""The file types of each hook (``types`` in pre-commit-hooks' ``.pre-commit-hooks.yaml``, v4.6.0)."""
HOOK_ENTRIES = {"trailing-whitespace": "trailing-whitespace-fixer"}
"""Hooks whose command (``entry``) is not their id."""
SUFFIX_TYPES = {".py": "python", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def file_types(path: Path, mode: int) -> set[str]:
    """The pre-commit types of a file that matter to the hooks above."""
    data = path.read_bytes()
    types = {SUFFIX_TYPES[path.suffix]} if path.suffix in SUFFIX_TYPES else set()
    return types | ({"text"} if b"\0" not in data else set()) | ({"executable"} if mode & 0o111 else set())


def test_bundle_passes_the_zoo_pre_commit_hooks(exported, zoo_ci, tmp_path):
    """Each hook of the zoo's ``.pre-commit-config.yaml`` with its arguments, run as pre-commit would on the bundle as
    a zoo pull request holds it (staged in git, without the weights that ``large_files.yml`` names): the hooks' own
    commands from the ``pre-commit-hooks`` package at the config's rev, since pre-commit clones its hooks from GitHub.
    """
    from importlib.metadata import entry_points, version

    config = yaml.safe_load((zoo_ci / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (repo,) = config["repos"]
    assert repo["repo"].endswith("/pre-commit-hooks") and repo["rev"] == f"v{version('pre-commit-hooks')}"
    bundle, modes = zip_contents(exported["zip"], tmp_path)
    for entry in yaml.safe_load((bundle / "large_files.yml").read_text(encoding="utf-8"))["large_files"]:
        (bundle / entry["path"]).unlink()
    for git in (["init", "-q"], ["add", "-A"]):
        assert run(["git", *git], cwd=bundle).returncode == 0
    staged = run(["git", "ls-files", "-z"], cwd=bundle).stdout.split("\0")
    files = {name: file_types(bundle / name, modes[name]) for name in staged if name}
    scripts = {point.name: point.value for point in entry_points(group="console_scripts")}
    ran = []
    for hook in repo["hooks"]:
        chosen = sorted(
            name
            for name, types in files.items()
            if HOOK_TYPES[hook["id"]] <= types
            and not re.search(config["exclude"], name)
            and not re.search(hook.get("exclude", "^$"), name)
        )
        if not chosen:
            continue
        module, function = scripts[HOOK_ENTRIES.get(hook["id"], hook["id"])].split(":")
        command = [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]
        result = run([*command, *hook.get("args", []), *chosen], cwd=bundle)
        assert result.returncode == 0, f"{hook['id']}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        ran.append(hook["id"])
    assert {"check-docstring-first", "pretty-format-json", "check-added-large-files", "check-yaml"} <= set(ran)


def test_onnx_export_matches_the_checkpoint(exported, tmp_path):
    """``onnx_export`` of the shipped weights, run with onnxruntime on a phantom-sized input, against PyTorch."""
    onnxruntime = pytest.importorskip("onnxruntime")
    import torch
    from monai.bundle import ConfigParser

    with zipfile.ZipFile(exported["zip"]) as archive:
        archive.extractall(tmp_path)
    bundle = tmp_path / NAME
    config, meta = bundle / "configs" / "inference.yaml", bundle / "configs" / "metadata.json"
    result = run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "onnx_export",
            "network_def",
            "--filepath",
            tmp_path / "model.onnx",
            "--ckpt_file",
            bundle / "models" / "model.pt",
            "--meta_file",
            meta,
            "--config_file",
            config,
            "--bundle_root",
            bundle,
            "--input_shape",
            "[1,1,64,64,64]",
            "--use_trace",
            "True",
        ],
        cwd=tmp_path,
        env=bundle_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.read_meta(str(meta))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    torch.manual_seed(0)
    image = torch.rand(1, 1, 64, 64, 64)
    with torch.no_grad():
        expected = network(image).numpy()
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    assert output.shape == expected.shape == (1, 9, 64, 64, 64)
    np.testing.assert_allclose(output, expected, atol=1e-3, rtol=0)  # the tolerance the bundle README states
    assert (output.argmax(1) == expected.argmax(1)).mean() > 0.999


def test_tampered_zip_fails_its_published_checksum_naming_it(exported, tmp_path):
    """The zip's ``.sha256`` (published beside it) in ``sha256sum -c`` format: a changed byte names the zip."""
    shutil.copy(exported["zip"], tmp_path)
    shutil.copy(exported["out"] / f"{exported['zip'].name}.sha256", tmp_path)
    good = run(["sha256sum", "-c", f"{exported['zip'].name}.sha256"], cwd=tmp_path)
    assert good.returncode == 0 and f"{exported['zip'].name}: OK" in good.stdout
    data = bytearray((tmp_path / exported["zip"].name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / exported["zip"].name).write_bytes(bytes(data))
    bad = run(["sha256sum", "-c", f"{exported['zip'].name}.sha256"], cwd=tmp_path)
    assert bad.returncode != 0 and f"{exported['zip'].name}: FAILED" in bad.stdout
