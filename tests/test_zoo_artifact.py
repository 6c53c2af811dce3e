"""The model-zoo artifact: export, download into an environment without this repository, weights, inference.

The zoo environment (``.venv-zoo`` in the repository root, reused while the bundle README's install lines are
unchanged) has only what the bundle README tells a zoo user to install: no ``semcl_components``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import EXPORT, bundle_env, run_captured

pytestmark = pytest.mark.zoo

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "abdomen_ct_semcl_segmentation"
NAME = BUNDLE.name
ZOO_VENV = Path(os.environ.get("SEMCL_ZOO_VENV", ROOT / ".venv-zoo"))


def readme_install_lines() -> list[str]:
    """The ``pip install`` lines of the bundle README's zoo-install block."""
    text = (BUNDLE / "docs" / "README.md").read_text()
    block = re.search(r"<!-- zoo-install:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "the bundle README has no zoo-install block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert lines and all(line.startswith("pip install ") for line in lines), lines
    return lines


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
    if not (python.is_file() and marker.is_file() and marker.read_text() == "\n".join(lines)):
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
            "scripts/semcl_components/__init__.py",
            "scripts/semcl_components/networks/encoders.py",
        } <= inside
        assert not [n for n in inside if "__pycache__" in n or n.endswith((".lock", ".pyc"))]
        text = archive.read(f"{NAME}/configs/metadata.json").decode()
        large = yaml.safe_load(archive.read(f"{NAME}/large_files.yml"))
        weights = ("models/model.pt", "models/pretrained_encoder.pt")
        shipped = {p: hashlib.sha256(archive.read(f"{NAME}/{p}")).hexdigest() for p in weights}
    metadata = json.loads(text)
    assert text == json.dumps(metadata, indent=4) + "\n"  # the zoo's 4-space format
    assert metadata["version"] in metadata["changelog"]
    assert "semcl_components" not in metadata["required_packages_version"]  # inside the bundle, not a package
    assert {"nibabel", "itk", "pytorch-ignite", "fire", "pyyaml", "pillow"} <= set(
        metadata["required_packages_version"]
    )
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in metadata["required_packages_version"].values())
    summary = json.loads((exported["work"] / "eval" / "test" / "evaluation_summary.json").read_text())
    assert metadata["eval_metrics"]["mean_dice"] == round(summary["metrics"]["val_mean_dice"], 4)
    assert len(metadata["eval_metrics"]["mean_dice_per_organ"]) == 8
    for entry in large["large_files"]:
        assert entry["hash_type"] == "sha256" and entry["hash_val"] == shipped[entry["path"]]
        assert entry["url"] == f"file://{exported['out']}/{Path(entry['path']).name}"
        assert sha256(exported["out"] / Path(entry["path"]).name) == entry["hash_val"]  # the file to publish
    digest, name = (exported["out"] / f"{exported['zip'].name}.sha256").read_text().split()
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
    assert named and named <= inside | {"scripts/semcl_components"}, named - inside
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

    image = phantom_dataset / json.loads((phantom_dataset / "datalist.json").read_text())["test"][0]["image"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the zoo's convention (from the bundle folder, relative config path), and from another folder
    from_bundle = infer(zoo_python, "configs/inference.yaml", bundle, image, tmp_path / "seg_a", env)
    from_elsewhere = infer(
        zoo_python, str(bundle / "configs" / "inference.yaml"), elsewhere, image, tmp_path / "seg_b", env
    )
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
    )
    for labels, affine in (from_bundle, from_elsewhere):
        np.testing.assert_array_equal(labels, repository[0])
        np.testing.assert_allclose(affine, repository[1])
    assert set(np.unique(repository[0])) <= set(range(9))


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


ZOO_CHECKS = """
import json, os, sys
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out

bundle, dataset = sys.argv[1], sys.argv[2]
path = lambda *p: os.path.join(bundle, *p)
for necessary in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.yaml"):
    assert os.path.exists(path(necessary)), f"missing {necessary}"
meta = json.load(open(path("configs", "metadata.json")))
assert meta["version"] in meta["changelog"], "version missing from changelog"
common = dict(meta_file=path("configs", "metadata.json"), config_file=path("configs", "inference.yaml"),
              bundle_root=bundle)
verify_net_in_out(net_id="network_def", p=1, n=1, any=1, device="cpu", **common)
ckpt_export(net_id="network_def", filepath=path("models", "verify_model.ts"), ckpt_file=path("models", "model.pt"),
            **common)
scripted = torch.jit.load(path("models", "verify_model.ts"), map_location="cpu")
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
print("zoo checks passed")
"""


def test_model_zoo_checks_pass_on_the_exported_bundle(exported, zoo_python, phantom_dataset, tmp_path):
    """What the zoo's verify_bundle.py (full mode) and unit tests check, run in the zoo environment."""
    with zipfile.ZipFile(exported["zip"]) as archive:
        archive.extractall(tmp_path / "models_path")
    bundle = tmp_path / "models_path" / NAME
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checks = run([zoo_python, "-c", ZOO_CHECKS, bundle, phantom_dataset], cwd=elsewhere, env=zoo_env())
    assert checks.returncode == 0, checks.stdout[-3000:] + checks.stderr[-3000:]
    assert "zoo checks passed" in checks.stdout
    # every JSON file of the zip pretty-printed with 4 spaces (the zoo's pre-commit pretty-format-json)
    with zipfile.ZipFile(exported["zip"]) as archive:
        for name in (n for n in archive.namelist() if n.endswith(".json")):
            text = archive.read(name).decode()
            assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n", name


def test_bundle_code_passes_the_zoo_code_format_checks(exported, tmp_path):
    """black, isort and flake8 at line length 120 with the zoo's settings, on the code inside the zip."""
    with zipfile.ZipFile(exported["zip"]) as archive:
        archive.extractall(tmp_path)
    code = tmp_path / NAME / "scripts"
    commands = {
        "black": [sys.executable, "-m", "black", "--check", "-l", "120", code],
        "isort": [sys.executable, "-m", "isort", "--check-only", "--profile", "black", "-l", "120", code],
        "flake8": [
            sys.executable,
            "-m",
            "flake8",
            "--isolated",
            "--max-line-length",
            "120",
            "--select",
            "B,C,E,F,N,P,T4,W,B9",
            "--per-file-ignores",
            "__init__.py:F401",
            "--ignore",
            "E203,E501,E741,W503,W504,C408,N812,B023,B905,B028,B907,C419",
            code,
        ],
    }
    for tool, command in commands.items():
        result = run(command, cwd=tmp_path)
        assert result.returncode == 0, f"{tool}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


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


def test_exported_metadata_verifies_against_the_schema(exported, tmp_path):
    """``verify_metadata`` on the zip's metadata (pins and eval_metrics added by the export), schema kept offline."""
    pytest.importorskip("jsonschema", reason="verify_metadata needs jsonschema (monai[jsonschema])")
    with zipfile.ZipFile(exported["zip"]) as archive:
        (tmp_path / "metadata.json").write_bytes(archive.read(f"{NAME}/configs/metadata.json"))
    schema = BUNDLE.parent / "meta_schema.json"
    result = run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "verify_metadata",
            "--meta_file",
            tmp_path / "metadata.json",
            "--filepath",
            schema,
        ],
        cwd=tmp_path,
        env=bundle_env(),
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "metadata is verified with no error." in result.stdout + result.stderr
