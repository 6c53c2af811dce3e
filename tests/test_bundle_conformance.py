"""The bundle against MONAI's own bundle tools, all offline: workflow properties, metadata schema, network I/O, export.

``verify_metadata`` normally downloads the schema named in metadata.json; ``monai.apps.utils.download_url`` returns
early when ``--filepath`` already exists (and no hash is asked for), so the schema kept in ``bundles/meta_schema.json``
is used and nothing is fetched. The subprocesses also get an unreachable proxy, so any download attempt would fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.networks.nets import SegResNet

from conftest import BUNDLE_DIR, CONFIGS, bundle_env

META_FILE = CONFIGS / "metadata.json"
SCHEMA_FILE = BUNDLE_DIR.parent / "meta_schema.json"


def run_offline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` with every proxy pointing at a closed local port."""
    env = bundle_env()
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = "http://127.0.0.1:9"
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        encoding="utf-8", errors="replace",
    )


def metadata() -> dict:
    return json.loads(META_FILE.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# workflow properties (what MONAI Label and other MONAI tools rely on)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config, workflow_type", [("train.yaml", "train"), ("inference.yaml", "infer")])
def test_config_defines_every_required_workflow_property(config, workflow_type, phantom_dataset, tmp_path):
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / config),
        meta_file=str(META_FILE),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(BUNDLE_DIR),
        dataset_dir=str(phantom_dataset),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
    )
    workflow.initialize()
    assert workflow.check_properties() == []


# ---------------------------------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------------------------------


def test_metadata_verifies_against_offline_schema(workdir):
    pytest.importorskip("jsonschema", reason="verify_metadata needs jsonschema (monai[jsonschema])")
    result = run_offline("verify_metadata", "--meta_file", str(META_FILE), "--filepath", str(SCHEMA_FILE), cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"File exists: {SCHEMA_FILE}, skipped downloading." in output
    assert "metadata is verified with no error." in output


def test_metadata_without_mandatory_key_fails_verification(workdir, tmp_path):
    pytest.importorskip("jsonschema", reason="verify_metadata needs jsonschema (monai[jsonschema])")
    broken = metadata()
    del broken["network_data_format"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    result = run_offline(
        "verify_metadata", "--meta_file", str(tmp_path / "metadata.json"), "--filepath", str(SCHEMA_FILE), cwd=workdir
    )
    assert result.returncode != 0
    assert "'network_data_format' is a required property" in result.stdout + result.stderr


def test_channel_def_names_every_phantom_organ(phantom_dataset):
    dataset_labels = json.loads((phantom_dataset / "dataset.json").read_text())["labels"]
    outputs = metadata()["network_data_format"]["outputs"]["pred"]
    assert outputs["channel_def"] == dataset_labels
    assert outputs["num_channels"] == len(dataset_labels) == 9
    assert [outputs["channel_def"][str(i)] for i in range(len(dataset_labels))][0] == "background"
    for label, name in dataset_labels.items():
        assert f"{label} {name}" in metadata()["label_classes"]


# ---------------------------------------------------------------------------------------------------------------------
# network input/output and TorchScript export
# ---------------------------------------------------------------------------------------------------------------------


def test_inference_network_matches_metadata_input_and_output(workdir):
    result = run_offline(
        "verify_net_in_out", "network_def", "--meta_file", str(META_FILE),
        "--config_file", str(CONFIGS / "inference.yaml"), "--p", "1", "--n", "1", "--any", "1", "--device", "cpu",
        cwd=workdir,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "data shape of network is verified with no error." in output


def test_ckpt_export_torchscript_matches_checkpoint(trained_model, workdir, tmp_path):
    network_args = {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]}  # as TINY_NETWORK_ARGS
    overrides = [item for key, value in network_args.items() for item in (f"--{key}", json.dumps(value))]
    result = run_offline(
        "ckpt_export", "network_def", "--filepath", str(tmp_path / "model.ts"),
        "--ckpt_file", str(trained_model.ckpt_dir / "model.pt"), "--meta_file", str(META_FILE),
        "--config_file", str(CONFIGS / "inference.yaml"), *overrides, cwd=workdir,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    extra_files = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(tmp_path / "model.ts"), map_location="cpu", _extra_files=extra_files)
    assert json.loads(extra_files["metadata.json"])["network_data_format"] == metadata()["network_data_format"]
    assert json.loads(extra_files["inference.json"])["network_def"]["_target_"] == "SegResNet"

    network = SegResNet(spatial_dims=3, in_channels=1, out_channels=9, **network_args)
    network.load_state_dict(torch.load(trained_model.ckpt_dir / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    torch.manual_seed(0)
    image = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        expected, exported = network(image), scripted(image)
    assert exported.shape == (1, 9, 32, 32, 32)
    torch.testing.assert_close(exported, expected, atol=1e-4, rtol=0)
