"""The multi-process overlays with 2 CPU processes (gloo), started by torchrun exactly as the bundle README says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (
    BUNDLE_DIR,
    CONFIGS,
    TINY_NETWORK_ARGS,
    TINY_PRETRAIN_ARGS,
    TINY_TRAIN_ARGS,
    bundle_command,
    bundle_env,
    config_arg,
    run_captured,
)
from test_bundle_workflows import SAVED_CHECKPOINT, _newest_readable_checkpoint_epoch, read_json

pytestmark = pytest.mark.multiprocess

TORCHRUN = Path(sys.executable).parent / "torchrun"


def torchrun(configs: list[str], args: list, nproc: int = 2) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N -m monai.bundle run --config_file [...] --bundle_root <bundle> args``
    (the README's).

    ``configs`` are config names without ``.yaml``, as for ``config_arg``.
    """
    return [
        str(TORCHRUN),
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        config_arg(*configs),
        "--bundle_root",
        str(BUNDLE_DIR),
        *map(str, args),
    ]


def run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = run_captured(command, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result


def kill_processes_naming(marker: str) -> int:
    """SIGKILL every process whose command line contains ``marker`` (torchrun and its workers); how many."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return killed


def kill_after_first_checkpoint(command: list[str], cwd: Path, models: Path, log_file: Path) -> int:
    """Start a torchrun ``command``; SIGKILL torchrun and every worker once an epoch checkpoint is saved.

    Killing torchrun alone leaves its workers running (they are not in its process group), so every process naming
    the run's checkpoint folder is killed, like a crash of the node. Returns the newest readable checkpoint's epoch.
    """
    with open(log_file, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=bundle_env(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not (SAVED_CHECKPOINT.search(log_file.read_text(errors="replace")) and list(models.glob("checkpoint_*"))):
            assert process.poll() is None, f"exited before a checkpoint:\n{log_file.read_text(encoding='utf-8')[-3000:]}"
            assert time.monotonic() < deadline, "no epoch checkpoint within the timeout"
            time.sleep(0.02)
        assert kill_processes_naming(str(models)) >= 3  # torchrun and 2 workers
        process.wait()
    assert not (models / "pretrained_encoder.pt").exists(), "the run finished before the kill"
    return _newest_readable_checkpoint_epoch(models)


def tensorboard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"))


# every crop is a whole 32^3 phantom and both views are that crop unchanged: the samples do not depend on the
# random state, so two processes with one volume each see exactly what one process with both volumes sees
IDENTICAL_SAMPLES = [
    "--train#view_transforms",
    "[]",
    "--patch_size",
    "[32,32,32]",
    "--view_size",
    "[32,32,32]",
    "--embedding_quality_interval",
    "0",
]


def test_two_process_pretraining_loss_equals_one_process_with_the_double_batch(phantom_dataset, tmp_path):
    common = ["--dataset_dir", phantom_dataset, "--max_epochs", "1", *TINY_PRETRAIN_ARGS, *IDENTICAL_SAMPLES]
    single = tmp_path / "single"
    run(
        bundle_command(
            "run",
            ["pretrain"],
            [*common, "--batch_size", "2", "--ckpt_dir", single / "models", "--output_dir", single / "eval"],
        ),
        cwd=tmp_path,
    )
    double = tmp_path / "double"
    run(
        torchrun(
            ["pretrain", "multi_gpu_pretrain"],
            [*common, "--batch_size", "1", "--ckpt_dir", double / "models", "--output_dir", double / "eval"],
        ),
        cwd=tmp_path,
    )
    one, two = (read_json(folder / "eval" / "run_summary.json") for folder in (single, double))
    assert one["epochs_completed"] == two["epochs_completed"] == 1
    np.testing.assert_allclose(two["history"][0]["mean_loss"], one["history"][0]["mean_loss"], rtol=1e-5)
    # only rank 0 wrote: one summary, the TensorBoard files of its two writers, one encoder
    assert len(tensorboard_files(double / "eval")) == len(tensorboard_files(single / "eval")) == 2
    encoder = torch.load(double / "models" / "pretrained_encoder.pt", map_location="cpu", weights_only=True)
    assert not any(key.startswith("module.") for key in encoder)  # the module itself, not the DDP wrapper


def test_two_process_finetuning_writes_a_model_that_single_process_inference_loads(phantom_dataset, tmp_path):
    out = tmp_path / "train"
    result = run(
        torchrun(
            ["train", "multi_gpu_train"],
            [
                "--dataset_dir",
                phantom_dataset,
                "--max_epochs",
                "1",
                "--val_key",
                "pretrain",  # 2 volumes, none trained on: MONAI's sampler needs one per process at least
                "--val_interval",
                "1",
                *TINY_TRAIN_ARGS,
                "--ckpt_dir",
                out / "models",
                "--output_dir",
                out / "eval",
            ],
        ),
        cwd=tmp_path,
    )
    summary = read_json(out / "eval" / "run_summary.json")
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    assert "val_mean_dice" in summary["history"][0]["val"]
    weights = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert weights and not any(key.startswith("module.") for key in weights)
    assert len(tensorboard_files(out / "eval")) == 2  # rank 0's trainer and evaluator writers
    assert result.stdout.count("Epoch[1] Complete") + result.stderr.count("Epoch[1] Complete") >= 1


def test_two_process_refinement_training_writes_a_stage_2_model(phantom_dataset, tmp_path):
    """The multi-process overlay applies to the cascade's stage 2 (train.yaml + train_refine.yaml) as to train.yaml."""
    out = tmp_path / "refine"
    settings = ["--max_epochs", "1", "--val_key", "pretrain", "--val_interval", "1", "--refine_crop_size", "[24,24,24]"]
    folders = ["--ckpt_dir", out / "models", "--output_dir", out / "eval"]
    configs = ["train", "train_refine", "multi_gpu_train"]
    run(torchrun(configs, ["--dataset_dir", phantom_dataset, *settings, *TINY_TRAIN_ARGS, *folders]), cwd=tmp_path)
    summary = read_json(out / "eval" / "run_summary.json")
    assert summary["status"] == "completed" and "val_mean_dice" in summary["history"][0]["val"]
    weights = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert weights["convInit.conv.weight"].shape[1] == 2  # [image, coarse mask of one organ]


def test_two_process_evaluation_gathers_the_cases_of_both_processes(trained_model, phantom_dataset, tmp_path):
    """The same model evaluated by one and by two processes: the same per-organ means and confusion counts."""
    common = [
        "--dataset_dir",
        phantom_dataset,
        "--ckpt_dir",
        trained_model.ckpt_dir,
        "--eval_key",
        "pretrain",  # 2 volumes the model did not train on (a training image would be refused)
        *TINY_NETWORK_ARGS,
        "--roi_size",
        "[32,32,32]",
    ]
    configs = ["train", "evaluate"]
    run(bundle_command("run", configs, [*common, "--output_dir", tmp_path / "one"]), cwd=tmp_path)
    run(torchrun([*configs, "multi_gpu_evaluate"], [*common, "--output_dir", tmp_path / "two"]), cwd=tmp_path)
    one, two = (read_json(tmp_path / name / "evaluation_summary.json") for name in ("one", "two"))
    assert two["per_class"] == one["per_class"]
    np.testing.assert_allclose(two["metrics"]["val_mean_dice"], one["metrics"]["val_mean_dice"], rtol=1e-6)
    counts = [(tmp_path / name / "confusion_matrix.csv").read_text(encoding="utf-8") for name in ("one", "two")]
    assert counts[0] == counts[1]


def test_two_process_pretraining_resumes_after_a_kill(phantom_dataset, tmp_path):
    models, output = tmp_path / "models", tmp_path / "eval"
    command = torchrun(
        ["pretrain", "multi_gpu_pretrain"],
        [
            "--dataset_dir",
            phantom_dataset,
            "--max_epochs",
            "30",  # epochs of a fraction of a second: the kill lands within the run
            *TINY_PRETRAIN_ARGS,
            "--embedding_quality_interval",
            "0",
            "--ckpt_dir",
            models,
            "--output_dir",
            output,
            "--resume_dir",
            models,
        ],
    )
    killed_at = kill_after_first_checkpoint(command, tmp_path, models, tmp_path / "first.log")
    result = run(command, cwd=tmp_path)
    log = result.stdout + result.stderr
    assert f"continuing with epoch {killed_at + 1}" in log
    summary = read_json(output / "run_summary.json")
    assert summary["status"] == "completed" and summary["epochs_completed"] == 30
    assert [record["epoch"] for record in summary["history"]] == list(range(1, 31))
    assert (models / "pretrained_encoder.pt").is_file()
    assert [p.name for p in models.glob("checkpoint_epoch=*.pt")] == ["checkpoint_epoch=30.pt"]


@pytest.mark.parametrize("name", ["multi_gpu_pretrain.yaml", "multi_gpu_train.yaml", "multi_gpu_evaluate.yaml"])
def test_readme_gives_the_torchrun_command_of_each_overlay(name):
    readme = (CONFIGS.parent / "docs" / "README.md").read_text(encoding="utf-8")
    assert f"configs/{name}" in readme and "torchrun --standalone --nproc_per_node" in readme
    assert json.dumps(name)[1:-1] in (CONFIGS / name).read_text(encoding="utf-8")  # the overlay's own header names itself
