"""The bundle's workflows end to end, as a user runs them: ``python -m monai.bundle run`` from another folder.

Every run is tiny (32^3 phantoms, an 8-filter SegResNet with 3 levels, 1-4 epochs, one CPU thread) and writes only
into temporary folders. Shared runs (a 2-epoch pretraining and a 2-epoch training) come from session fixtures in
conftest.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import (
    TINY_INFERENCE_ARGS,
    TINY_PRETRAIN_ARGS,
    TINY_TRAIN_ARGS,
    bundle_command,
    bundle_env,
    write_dicom_series,
)

ORGANS = ["spleen", "right kidney", "left kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas"]
LOAD_REPORT = re.compile(r"load_pretrained_encoder: encoder weights: (\d+) loaded \((\d+) adapted\), (\d+) skipped")


def read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def drop_setting(args: list[str], name: str) -> list[str]:
    """Command-line ``args`` without the setting ``name`` and its value."""
    at = args.index(name)
    return args[:at] + args[at + 2:]


def read_json(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text(encoding="utf-8"))


def assert_history(summary: dict, epochs: list[int]) -> None:
    """The summary records exactly ``epochs``, each with a finite mean loss, and says the run completed."""
    assert summary["status"] == "completed"
    assert [record["epoch"] for record in summary["history"]] == epochs
    assert summary["epochs_completed"] == epochs[-1]
    for record in summary["history"]:
        assert math.isfinite(record["mean_loss"]), record


def copy_run(ckpt_dir: Path, output_dir: Path, dest: Path) -> tuple[Path, Path]:
    """A copy of a finished run's checkpoint and output folders, to continue it without touching the original."""
    new_ckpt, new_out = dest / "models", dest / "eval"
    shutil.copytree(ckpt_dir, new_ckpt)
    shutil.copytree(output_dir, new_out)
    return new_ckpt, new_out


def iteration_epochs(log: str, max_epochs: int) -> set[int]:
    """Epochs of the ``Epoch: e/max, Iter: i/n`` lines that StatsHandler logs for each training iteration."""
    return {int(e) for e in re.findall(rf"Epoch: (\d+)/{max_epochs}, Iter: ", log)}


# ---------------------------------------------------------------------------------------------------------------------
# pretraining
# ---------------------------------------------------------------------------------------------------------------------


def test_pretrain_pool_writes_encoder_and_summary(pretrained_pool):
    encoder = torch.load(pretrained_pool.ckpt_dir / "pretrained_encoder.pt", map_location="cpu", weights_only=True)
    assert encoder["convInit.conv.weight"].shape == (8, 1, 3, 3, 3)  # pool mode: the image alone goes in
    summary = read_json(pretrained_pool.output_dir / "run_summary.json")
    assert_history(summary, [1, 2])
    assert summary["workflow"] == "pretrain"
    assert (summary["positives"], summary["embedding_mode"]) == ("class", "pool")
    assert summary["encoder_file"] == str(pretrained_pool.ckpt_dir / "pretrained_encoder.pt")
    assert all(record["mean_num_objects"] > 0 for record in summary["history"])


def test_pretrain_records_embedding_quality_in_summary_tensorboard_and_plot(pretrained_pool):
    summary = read_json(pretrained_pool.output_dir / "run_summary.json")
    for record in summary["history"]:  # measured after every epoch (--embedding_quality_interval 1)
        metrics = record["metrics"]
        assert 0.0 <= metrics["embedding_knn_accuracy"] <= 1.0, record
        assert -1.0 <= metrics["embedding_silhouette_held_out"] <= 1.0, record
        assert -1.0 <= metrics["embedding_silhouette_reference"] <= 1.0, record
    assert "embedding quality (" in pretrained_pool.run.log
    events = b"".join(path.read_bytes() for path in pretrained_pool.output_dir.glob("events.out.tfevents.*"))
    assert b"embedding_knn_accuracy" in events
    assert (pretrained_pool.output_dir / "embedding_pca.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pretrain_channel_mode_trains_two_channel_encoder(run_bundle, phantom_dataset, tmp_path):
    run_bundle(["pretrain"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--embedding_mode", "channel", "--max_objects", "2", *TINY_PRETRAIN_ARGS,
    ])
    encoder = torch.load(tmp_path / "models" / "pretrained_encoder.pt", map_location="cpu", weights_only=True)
    assert encoder["convInit.conv.weight"].shape[1] == 2  # [image, attention mask]
    summary = read_json(tmp_path / "eval" / "run_summary.json")
    assert_history(summary, [1])
    assert summary["embedding_mode"] == "channel"


def test_pretrain_simclr_overlay_contrasts_whole_patches(run_bundle, phantom_dataset, tmp_path):
    run_bundle(["pretrain", "pretrain_simclr"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", *drop_setting(TINY_PRETRAIN_ARGS, "--patch_size"),  # the overlay's: the view size
    ])
    assert (tmp_path / "models" / "pretrained_encoder_simclr.pt").is_file()
    assert (tmp_path / "models" / "pretrain_simclr_checkpoints" / "checkpoint_epoch=1.pt").is_file()
    summary = read_json(tmp_path / "eval" / "run_summary.json")
    assert_history(summary, [1])
    assert (summary["workflow"], summary["mask_mode"], summary["positives"]) == ("pretrain_simclr", "whole", "instance")
    # one whole-view sample per view: 2 crops x 2 views, each view's only positive is the other view of its crop
    assert summary["final_num_objects"] == 4 and summary["final_num_positive_pairs"] == 4


# ---------------------------------------------------------------------------------------------------------------------
# segmentation training, evaluation, inference
# ---------------------------------------------------------------------------------------------------------------------


def test_train_from_scratch_writes_model_and_summary(trained_model):
    assert (trained_model.ckpt_dir / "model.pt").is_file()
    assert (trained_model.ckpt_dir / "checkpoint_epoch=2.pt").is_file()
    assert "a new run starts from the network's initial weights" in trained_model.run.log
    assert LOAD_REPORT.search(trained_model.run.log) is None
    summary = read_json(trained_model.output_dir / "run_summary.json")
    assert_history(summary, [1, 2])
    assert (summary["workflow"], summary["pretrained_encoder"]) == ("train", "")
    assert all(0.0 <= record["val"]["val_mean_dice"] <= 1.0 for record in summary["history"])
    assert summary["best_metric_epoch"] in (1, 2)
    assert list(summary["per_class"]["val_mean_dice"]) == ORGANS


def test_train_without_validation_cases_writes_the_last_model(run_bundle, phantom_dataset, tmp_path):
    """MONAI Label's val_split 0.2 of one labelled study leaves no validation case: model.pt is the last epoch's."""
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--validate#dataset#data", "[]", *TINY_TRAIN_ARGS,
    ])
    assert "no validation cases (4 training cases): training without validation" in run.log
    assert (tmp_path / "models" / "model.pt").is_file()


def test_train_without_training_cases_stops_naming_the_fix(run_bundle, phantom_dataset, tmp_path):
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--train#dataset#data", "[]", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    assert run.returncode != 0
    assert "no training cases: the training list is empty (1 validation cases)" in run.log
    assert not (tmp_path / "models" / "model.pt").exists()


def test_train_from_pretrained_encoder_reports_loaded_weights(run_bundle, phantom_dataset, pretrained_pool, tmp_path):
    encoder_file = pretrained_pool.ckpt_dir / "pretrained_encoder.pt"
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--pretrained_encoder", encoder_file, *TINY_TRAIN_ARGS,
    ])
    report = LOAD_REPORT.search(run.log)
    assert report is not None, run.log[-3000:]
    loaded, adapted, skipped = map(int, report.groups())
    assert loaded > 0 and (adapted, skipped) == (0, 0)
    summary = read_json(tmp_path / "eval" / "run_summary.json")
    assert_history(summary, [1])
    assert summary["pretrained_encoder"] == str(encoder_file)


@pytest.mark.parametrize("setting, expect_load", [([], True), (["--pretrained_encoder", ""], False)])
def test_train_starts_from_the_encoder_in_ckpt_dir_unless_told_otherwise(
    run_bundle, phantom_dataset, pretrained_pool, tmp_path, setting, expect_load
):
    """Pretraining writes <ckpt_dir>/pretrained_encoder.pt; training there uses it by default, '' means scratch."""
    (tmp_path / "models").mkdir()
    shutil.copy(pretrained_pool.ckpt_dir / "pretrained_encoder.pt", tmp_path / "models")
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", *setting, *TINY_TRAIN_ARGS,
    ])
    assert (LOAD_REPORT.search(run.log) is not None) == expect_load
    expected = str(tmp_path / "models" / "pretrained_encoder.pt") if expect_load else ""
    assert read_json(tmp_path / "eval" / "run_summary.json")["pretrained_encoder"] == expected


def test_evaluate_writes_metric_csvs_and_per_organ_summary(run_bundle, phantom_dataset, trained_model, tmp_path):
    run_bundle(["train", "evaluate"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path,
        *TINY_TRAIN_ARGS,
    ])
    metrics = ["val_mean_dice", "val_hd95", "val_surface_dice"]
    test_images = [e["image"] for e in read_json(phantom_dataset / "datalist.json")["test"]]
    for metric in metrics:
        raw = (tmp_path / f"{metric}_raw.csv").read_text(encoding="utf-8").splitlines()
        assert raw[0].split(",") == ["filename"] + [f"class{i}" for i in range(len(ORGANS))] + ["mean"]
        assert [Path(row.split(",")[0]).name for row in raw[1:]] == [Path(p).name for p in test_images]
        assert (tmp_path / f"{metric}_summary.csv").is_file()
    assert (tmp_path / "metrics.csv").is_file()
    summary = read_json(tmp_path / "evaluation_summary.json")
    assert (summary["workflow"], summary["status"], summary["eval_key"]) == ("evaluate", "completed", "test")
    assert summary["checkpoint"] == str(trained_model.ckpt_dir / "model.pt")
    assert sorted(summary["metrics"]) == sorted(metrics)
    for metric in metrics:
        assert list(summary["per_class"][metric]) == ORGANS
    dice = [v for v in summary["per_class"]["val_mean_dice"].values() if v is not None]
    assert dice and all(0.0 <= v <= 1.0 for v in dice)
    # the voxel confusion matrix of the test cases: every labelled voxel counted once, rows = true classes
    rows = [line.split(",") for line in (tmp_path / "confusion_matrix.csv").read_text(encoding="utf-8").splitlines()]
    assert rows[0][1:] == ["background", *ORGANS] and [r[0] for r in rows[1:]] == ["background", *ORGANS]
    voxels = sum(int(np.prod(nib.load(phantom_dataset / entry["label"]).shape))
                 for entry in read_json(phantom_dataset / "datalist.json")["test"])
    assert sum(int(v) for r in rows[1:] for v in r[1:]) == voxels  # same grid: pixdim equals the phantoms' spacing
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def _assert_label_map(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> None:
    seg = nib.load(path)
    assert seg.shape == shape
    np.testing.assert_allclose(seg.affine, affine, atol=1e-4)
    assert seg.get_data_dtype() == np.uint8
    labels = np.unique(np.asanyarray(seg.dataobj))
    assert labels.min() >= 0 and labels.max() <= len(ORGANS), labels


def test_inference_segments_test_split(run_bundle, phantom_dataset, trained_model, tmp_path):
    run_bundle(["inference"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path,
        *TINY_INFERENCE_ARGS,
    ])
    for entry in read_json(phantom_dataset / "datalist.json")["test"]:
        image = nib.load(phantom_dataset / entry["image"])
        name = Path(entry["image"]).name.removesuffix(".nii.gz")
        _assert_label_map(tmp_path / f"{name}_seg.nii.gz", image.shape, image.affine)


def _tilted_lps_affine(spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    """An affine with L-P-S axes, tilted by a few degrees about every axis, anisotropic spacing, off-centre origin."""
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix()
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def test_inference_output_keeps_nifti_input_geometry(run_bundle, phantom_dataset, trained_model, tmp_path):
    volume = np.asanyarray(nib.load(phantom_dataset / "imagesTr" / "phantom_001.nii.gz").dataobj)[:24, :30, :28]
    affine = _tilted_lps_affine((2.0, 1.25, 1.5), (12.5, -30.0, 47.25))
    image = nib.Nifti1Image(volume.astype(np.int16), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    nib.save(image, tmp_path / "tilted.nii.gz")
    run_bundle(["inference"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path / "out",
        "--input_path", tmp_path / "tilted.nii.gz", *TINY_INFERENCE_ARGS,
    ])
    _assert_label_map(tmp_path / "out" / "tilted_seg.nii.gz", volume.shape, affine)


def test_inference_keeps_a_single_slice_volume_3d_with_its_spacing(run_bundle, phantom_dataset, tmp_path):
    """A 32x32x1 input must come out as a 32x32x1 label map on its grid, not as a 2D image that loses z."""
    volume = np.asanyarray(nib.load(phantom_dataset / "imagesTr" / "phantom_001.nii.gz").dataobj)[:, :, 16:17]
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-20.0, 15.0, 42.0]
    nib.save(nib.Nifti1Image(volume.astype(np.int16), affine), tmp_path / "slice.nii.gz")
    run_bundle(["inference"], [
        "--dataset_dir", phantom_dataset, "--output_dir", tmp_path / "out", "--input_path", tmp_path / "slice.nii.gz",
        "--load_pretrain", "false", *TINY_INFERENCE_ARGS,
    ])
    _assert_label_map(tmp_path / "out" / "slice_seg.nii.gz", (32, 32, 1), affine)


def test_inference_on_dicom_series_keeps_its_geometry(run_bundle, phantom_dataset, trained_model, tmp_path):
    from scipy.spatial.transform import Rotation

    volume = np.asanyarray(nib.load(phantom_dataset / "imagesTr" / "phantom_001.nii.gz").dataobj)[:24, :30, :20]
    spacing, origin = np.array([1.25, 2.0, 1.5]), np.array([-10.0, 20.0, 35.0])
    direction = Rotation.from_euler("z", 15, degrees=True).as_matrix()
    try:
        write_dicom_series(volume.astype(np.int16), spacing, origin, direction, tmp_path / "series")
    except Exception as error:  # ITK built without GDCM, or an API change: the inference path cannot be tested here
        pytest.skip(f"could not write a DICOM series with ITK/GDCM: {error!r}")
    run_bundle(["inference"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path / "out",
        "--input_path", tmp_path / "series", *TINY_INFERENCE_ARGS,
    ])
    lps_affine = np.eye(4)
    lps_affine[:3, :3] = direction @ np.diag(spacing)
    lps_affine[:3, 3] = origin
    ras_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps_affine  # NIfTI is RAS+, DICOM is LPS
    _assert_label_map(tmp_path / "out" / "series_seg.nii.gz", volume.shape, ras_affine)


# ---------------------------------------------------------------------------------------------------------------------
# resuming
# ---------------------------------------------------------------------------------------------------------------------


def test_train_resumes_finished_run_with_more_epochs(run_bundle, phantom_dataset, trained_model, tmp_path):
    ckpt_dir, output_dir = copy_run(trained_model.ckpt_dir, trained_model.output_dir, tmp_path)
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", ckpt_dir, "--output_dir", output_dir, "--max_epochs", "3",
        "--val_interval", "1", *TINY_TRAIN_ARGS,
    ])
    assert f"resumed from {ckpt_dir / 'checkpoint_epoch=2.pt'} (epoch 2 of 3): continuing with epoch 3." in run.log
    assert iteration_epochs(run.log, 3) == {3}
    summary = read_json(output_dir / "run_summary.json")
    assert_history(summary, [1, 2, 3])
    assert summary["max_epochs"] == 3
    assert (ckpt_dir / "checkpoint_epoch=3.pt").is_file()


def test_pretrain_resumes_finished_run_with_more_epochs(run_bundle, phantom_dataset, pretrained_pool, tmp_path):
    ckpt_dir, output_dir = copy_run(pretrained_pool.ckpt_dir, pretrained_pool.output_dir, tmp_path)
    before = torch.load(ckpt_dir / "pretrained_encoder.pt", map_location="cpu", weights_only=True)
    run = run_bundle(["pretrain"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", ckpt_dir, "--output_dir", output_dir, "--max_epochs", "3",
        *TINY_PRETRAIN_ARGS,
    ])
    last = ckpt_dir / "pretrain_checkpoints" / "checkpoint_epoch=2.pt"
    assert f"resumed from {last} (epoch 2 of 3): continuing with epoch 3." in run.log
    assert iteration_epochs(run.log, 3) == {3}
    assert_history(read_json(output_dir / "run_summary.json"), [1, 2, 3])
    after = torch.load(ckpt_dir / "pretrained_encoder.pt", map_location="cpu", weights_only=True)
    assert not torch.equal(before["convInit.conv.weight"], after["convInit.conv.weight"])  # epoch 3 was trained


def test_train_skips_checkpoint_truncated_by_a_kill(run_bundle, phantom_dataset, trained_model, tmp_path):
    """MONAI's CheckpointSaver writes in place: a kill during the save leaves a truncated newest file behind."""
    ckpt_dir, output_dir = copy_run(trained_model.ckpt_dir, trained_model.output_dir, tmp_path)
    complete = (ckpt_dir / "checkpoint_epoch=2.pt").read_bytes()
    (ckpt_dir / "checkpoint_epoch=3.pt").write_bytes(complete[: len(complete) // 2])
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", ckpt_dir, "--output_dir", output_dir, "--max_epochs", "3",
        "--val_interval", "1", *TINY_TRAIN_ARGS,
    ])
    assert f"skipping unreadable checkpoint {ckpt_dir / 'checkpoint_epoch=3.pt'}" in run.log
    assert f"resumed from {ckpt_dir / 'checkpoint_epoch=2.pt'} (epoch 2 of 3)" in run.log
    assert iteration_epochs(run.log, 3) == {3}
    assert_history(read_json(output_dir / "run_summary.json"), [1, 2, 3])
    assert "trainer" in torch.load(ckpt_dir / "checkpoint_epoch=3.pt", map_location="cpu", weights_only=True)


SAVED_CHECKPOINT = re.compile(r"SupervisedTrainer - INFO - Saved checkpoint at epoch: (\d+)")


def _checkpoint_epoch(path: Path) -> int:
    return int(re.search(r"_epoch=(\d+)\.pt$", path.name).group(1))


def _newest_readable_checkpoint_epoch(checkpoint_dir: Path) -> int:
    """Epoch of the newest ``checkpoint_epoch=N.pt`` that loads (a kill can truncate the one being written), or 0."""
    for path in sorted(checkpoint_dir.glob("checkpoint_epoch=*.pt"), key=_checkpoint_epoch, reverse=True):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except (EOFError, RuntimeError):
            continue
        return _checkpoint_epoch(path)
    return 0


def _kill_after_first_checkpoint(
    command: list[str],
    cwd: Path,
    checkpoint_dir: Path,
    log_file: Path,
    timeout: float = 240,
    stop_signal: signal.Signals = signal.SIGKILL,
) -> int:
    """Start ``command``; send ``stop_signal`` (to its process group) as soon as the first epoch checkpoint is on disk
    and logged as saved.

    Returns the epoch of the newest complete checkpoint left behind (at least 1).
    """
    with open(log_file, "w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=bundle_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout

        def checkpoint_saved() -> bool:
            saved = SAVED_CHECKPOINT.search(read_log(log_file))
            return bool(saved and list(checkpoint_dir.glob("checkpoint_epoch=*.pt")))

        try:
            while not checkpoint_saved():
                if process.poll() is not None:
                    pytest.fail(f"exited with {process.returncode} before a checkpoint:\n{read_log(log_file)[-3000:]}")
                assert time.monotonic() < deadline, "no epoch checkpoint within the timeout"
                time.sleep(0.02)
            assert process.poll() is None, "the run finished before it could be interrupted"
            os.killpg(process.pid, stop_signal)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # SIGKILL ends the process in the kernel; after SIGTERM the run ends itself, with the shell's status 128 + 15
    assert process.returncode == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 128 + stop_signal), read_log(
        log_file
    )[-3000:]
    logged = max(int(e) for e in SAVED_CHECKPOINT.findall(read_log(log_file)))
    saved = _newest_readable_checkpoint_epoch(checkpoint_dir)
    assert saved >= logged >= 1
    return saved


def _assert_continues_after_kill(run_bundle, configs, args, workdir, checkpoint_dir, output_dir, tmp_path) -> None:
    max_epochs = 4
    args = [*args, "--max_epochs", str(max_epochs)]
    command = bundle_command("run", configs, args)
    saved = _kill_after_first_checkpoint(command, workdir, checkpoint_dir, tmp_path / "killed.log")
    assert saved < max_epochs
    run = run_bundle(configs, args)  # the same command again
    latest = checkpoint_dir / f"checkpoint_epoch={saved}.pt"
    assert f"resumed from {latest} (epoch {saved} of {max_epochs}): continuing with epoch {saved + 1}." in run.log
    assert iteration_epochs(run.log, max_epochs) == set(range(saved + 1, max_epochs + 1))
    assert_history(read_json(output_dir / "run_summary.json"), list(range(1, max_epochs + 1)))


def test_train_continues_after_sigkill(run_bundle, phantom_dataset, workdir, tmp_path):
    args = [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--train_key", "finetune_2", "--val_interval", "1", *TINY_TRAIN_ARGS,
    ]
    _assert_continues_after_kill(run_bundle, ["train"], args, workdir, tmp_path / "models", tmp_path / "eval", tmp_path)
    assert (tmp_path / "models" / "model.pt").is_file()


def test_pretrain_continues_after_sigkill(run_bundle, phantom_dataset, workdir, tmp_path):
    args = [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        *TINY_PRETRAIN_ARGS,
    ]
    checkpoints = tmp_path / "models" / "pretrain_checkpoints"
    _assert_continues_after_kill(run_bundle, ["pretrain"], args, workdir, checkpoints, tmp_path / "eval", tmp_path)
    assert (tmp_path / "models" / "pretrained_encoder.pt").is_file()


def test_train_stopped_by_sigterm_says_interrupted_in_its_summary(phantom_dataset, workdir, tmp_path):
    args = [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--train_key", "finetune_1", "--val_interval", "5", "--max_epochs", "50", *TINY_TRAIN_ARGS,
    ]
    command = bundle_command("run", ["train"], args)
    _kill_after_first_checkpoint(command, workdir, tmp_path / "models", tmp_path / "stopped.log",
                                 stop_signal=signal.SIGTERM)
    summary = read_json(tmp_path / "eval" / "run_summary.json")
    assert summary["status"] == "interrupted" and summary["error"] == "Terminated: terminated by SIGTERM", summary
    assert 1 <= summary["epochs_completed"] < 50


# ---------------------------------------------------------------------------------------------------------------------
# bad input: a non-zero exit and a message that says what is wrong
# ---------------------------------------------------------------------------------------------------------------------


def _assert_fails_with(run, *messages: str) -> None:
    assert run.returncode != 0
    for message in messages:
        assert message in run.log, f"{message!r} not in the log:\n{run.log[-3000:]}"


def test_missing_dataset_dir_fails_clearly(run_bundle, tmp_path):
    run = run_bundle(["train"], [
        "--dataset_dir", "/nonexistent", "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, "dataset_dir /nonexistent does not exist or is not a folder; set --dataset_dir.")


def test_training_image_without_label_fails_clearly(run_bundle, phantom_dataset, tmp_path):
    datalist = read_json(phantom_dataset / "datalist.json")
    datalist["unlabelled"] = [{"image": datalist["finetune_1"][0]["image"]}]
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--data_list_file_path", tmp_path / "datalist.json",
        "--train_key", "unlabelled", "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"image {datalist['unlabelled'][0]['image']} (entry 0 of 'unlabelled'", "has no 'label'")


def test_inference_on_two_channel_image_fails_clearly(run_bundle, phantom_dataset, trained_model, tmp_path):
    source = nib.load(phantom_dataset / "imagesTr" / "phantom_001.nii.gz")
    volume = np.asanyarray(source.dataobj)
    nib.save(nib.Nifti1Image(np.stack([volume, volume], axis=-1), source.affine), tmp_path / "two_channels.nii.gz")
    run = run_bundle(["inference"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path / "out",
        "--input_path", tmp_path / "two_channels.nii.gz", *TINY_INFERENCE_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"{tmp_path / 'two_channels.nii.gz'}: the network takes 1-channel images, got 2 channels")
    assert not list(tmp_path.rglob("*_seg.nii.gz"))


@pytest.mark.parametrize("workflow", [["inference"], ["train", "evaluate"]])
def test_weights_of_other_network_settings_are_named(run_bundle, phantom_dataset, trained_model, tmp_path, workflow):
    """A model.pt of a smaller network (the tiny test settings) against the default network settings."""
    run = run_bundle(workflow, [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path / "out",
        "--roi_size", "[32,32,32]",
    ], expect_success=False)
    _assert_fails_with(run, f"the weights in {trained_model.ckpt_dir / 'model.pt'} do not fit this network")
    assert "init_filters, blocks_down, blocks_up" in run.log
    assert not list(tmp_path.rglob("*_seg.nii.gz"))


def test_missing_pretrained_encoder_fails_clearly(run_bundle, phantom_dataset, tmp_path):
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--pretrained_encoder", tmp_path / "missing.pt", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"encoder checkpoint not found: {tmp_path / 'missing.pt'}")


def test_pretrained_encoder_of_another_architecture_fails_clearly(
    run_bundle, phantom_dataset, pretrained_pool, tmp_path
):
    """The 8-filter pretrained encoder into the default 16-filter network: every tensor differs in shape."""
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--pretrained_encoder", pretrained_pool.ckpt_dir / "pretrained_encoder.pt",
        "--blocks_down", "[1,1,1]", "--blocks_up", "[1,1]", "--init_filters", "16", "--roi_size", "[32,32,32]",
    ], expect_success=False)
    _assert_fails_with(run, "no encoder weight fits the network (0 tensors loaded)", "differ in shape", "init_filters")


# ---------------------------------------------------------------------------------------------------------------------
# reliability: no silent garbage (each test reproduces a finding of the reliability review)
# ---------------------------------------------------------------------------------------------------------------------


def _copy_dataset(phantom_dataset: Path, folder: Path) -> Path:
    """A private copy of the tiny phantom dataset, to damage one file of it."""
    shutil.copytree(phantom_dataset, folder)
    return folder


def test_nan_in_a_training_image_stops_the_run_naming_it(run_bundle, phantom_dataset, tmp_path):
    dataset = _copy_dataset(phantom_dataset, tmp_path / "data")
    image_file = dataset / read_json(dataset / "datalist.json")["finetune_1"][0]["image"]
    source = nib.load(image_file)
    volume = np.asanyarray(source.dataobj).astype(np.float32)
    volume[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(volume, source.affine), image_file)
    run = run_bundle(["train"], [
        "--dataset_dir", dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--train_key", "finetune_1", "--max_epochs", "1", "--val_interval", "1", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"{image_file.resolve()}: 1 voxels are not finite")
    assert not (tmp_path / "models" / "model.pt").exists()


@pytest.mark.parametrize("case", ["truncated", "all_nan"])
def test_inference_refuses_a_damaged_image_and_writes_nothing(run_bundle, phantom_dataset, trained_model, tmp_path, case):
    source = nib.load(phantom_dataset / "imagesTr" / "phantom_001.nii.gz")
    bad = tmp_path / "ct.nii.gz"
    if case == "truncated":
        shutil.copy(phantom_dataset / "imagesTr" / "phantom_001.nii.gz", bad)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        nib.save(nib.Nifti1Image(np.full(source.shape, np.nan, np.float32), source.affine), bad)
    run = run_bundle(["inference"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir, "--output_dir", tmp_path / "out",
        "--input_path", bad, *TINY_INFERENCE_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"{bad}: " + ("the file is" if case == "truncated" else "32768 voxels are not finite"))
    assert not list(tmp_path.rglob("*_seg.nii.gz"))


def test_shifted_label_stops_training_naming_both_files(run_bundle, phantom_dataset, tmp_path):
    dataset = _copy_dataset(phantom_dataset, tmp_path / "data")
    entry = read_json(dataset / "datalist.json")["finetune_1"][0]
    label_file = dataset / entry["label"]
    source = nib.load(label_file)
    affine = source.affine.copy()
    affine[0, 3] += 30.0
    nib.save(nib.Nifti1Image(np.asanyarray(source.dataobj), affine), label_file)
    run = run_bundle(["train"], [
        "--dataset_dir", dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--train_key", "finetune_1", "--max_epochs", "1", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"image {(dataset / entry['image']).resolve()} and label {label_file.resolve()} differ in position")


def test_mistyped_setting_stops_before_any_work(run_bundle, phantom_dataset, tmp_path):
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epoch", "1", "--val_interval", "abc", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, "--max_epoch is not a setting of this workflow; did you mean --max_epochs?",
                       "--val_interval must be an integer (default 5), got 'abc'")
    assert not (tmp_path / "models").exists()


def test_resume_false_as_written_starts_over(run_bundle, phantom_dataset, trained_model, tmp_path):
    shutil.copytree(trained_model.ckpt_dir, tmp_path / "models")
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--val_interval", "1", "--resume", "false", *TINY_TRAIN_ARGS,
    ])
    assert "resume disabled: a new run starts" in run.log
    assert sorted(p.name for p in (tmp_path / "models").glob("checkpoint_epoch=*.pt")) == ["checkpoint_epoch=1.pt"]


def test_fewer_epochs_than_the_validation_interval_still_writes_model_pt(run_bundle, phantom_dataset, tmp_path):
    run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "2", "--val_interval", "5", *TINY_TRAIN_ARGS,
    ])
    assert (tmp_path / "models" / "model.pt").is_file()
    history = read_json(tmp_path / "eval" / "run_summary.json")["history"]
    assert [("val" in h) for h in history] == [False, True]  # only the epoch that was validated, at the end
    assert set(history[1]["val_per_class"]["val_mean_dice"]) == set(ORGANS)


def test_partly_fitting_encoder_is_refused_unless_allowed(run_bundle, phantom_dataset, pretrained_pool, tmp_path):
    """The tiny encoder has blocks_down [1,1,1]; a network with [1,2,1] has more encoder tensors than it fills."""
    args = [
        "--dataset_dir", phantom_dataset, "--output_dir", tmp_path / "eval", "--max_epochs", "1",
        "--pretrained_encoder", pretrained_pool.ckpt_dir / "pretrained_encoder.pt", "--init_filters", "8",
        "--blocks_down", "[1,2,1]", "--blocks_up", "[1,1]", "--roi_size", "[32,32,32]", "--num_samples", "1",
    ]
    run = run_bundle(["train"], [*args, "--ckpt_dir", tmp_path / "refused"], expect_success=False)
    _assert_fails_with(run, "encoder tensors fit", "(required: 100%)", "--encoder_min_loaded_fraction")
    run = run_bundle(["train"], [*args, "--ckpt_dir", tmp_path / "allowed", "--encoder_min_loaded_fraction", "0.5"])
    loaded, _, _ = map(int, LOAD_REPORT.search(run.log).groups())
    assert loaded > 0


def test_second_run_in_a_ckpt_dir_in_use_is_refused(run_bundle, phantom_dataset, workdir, tmp_path):
    args = [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "50", *TINY_TRAIN_ARGS,
    ]
    first = subprocess.Popen(bundle_command("run", ["train"], args), cwd=workdir, env=bundle_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / "models" / ".lock"
        deadline = time.time() + 120
        while not (lock.is_file() and lock.read_text(encoding="utf-8").strip()) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before it held the lock"
        run = run_bundle(["train"], [*args[:-len(TINY_TRAIN_ARGS)], "--output_dir", tmp_path / "eval2", *TINY_TRAIN_ARGS],
                         expect_success=False)
        _assert_fails_with(run, f"ckpt_dir {tmp_path / 'models'} is in use by pid {first.pid}")
    finally:
        first.kill()
        first.wait()


def test_bundle_in_a_folder_with_a_space_and_non_ascii_runs_from_itself_or_with_bundle_root(
    phantom_dataset, workdir, tmp_path
):
    """A bundle copied to ``.../bü ndle/`` finds its own configs and components, run from its own folder (the model
    zoo's convention) or from another folder that names it with ``--bundle_root``."""
    from conftest import BUNDLE_DIR, run_captured

    bundle = tmp_path / "bü ndle" / BUNDLE_DIR.name
    shutil.copytree(BUNDLE_DIR / "configs", bundle / "configs")
    image = phantom_dataset / json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))["test"][0]["image"]
    config = bundle / "configs" / "inference.yaml"
    for cwd, config_args in (
        (bundle, ["configs/inference.yaml"]),
        (workdir, [str(config), "--bundle_root", str(bundle)]),
        (workdir, [f"['{config}']", "--bundle_root", str(bundle)]),
    ):
        command = [
            sys.executable, "-m", "monai.bundle", "run", "--config_file", *config_args, "--input_path", image,
            "--load_pretrain", "false", *TINY_INFERENCE_ARGS,
        ]
        result = run_captured(command, cwd=cwd)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert len(list((bundle / "eval").glob("*_seg.nii.gz"))) == 1  # <bundle_root>/eval: the bundle was found
        shutil.rmtree(bundle / "eval")


def test_a_command_from_another_folder_without_bundle_root_names_the_missing_file_and_the_option(
    phantom_dataset, workdir
):
    """The working directory is the bundle folder unless ``--bundle_root`` names another: from elsewhere the run
    stops at its first bundle file, naming it and the option (not deep inside a component)."""
    from conftest import CONFIGS, run_captured

    image = phantom_dataset / json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))["test"][0]["image"]
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", CONFIGS / "inference.yaml",
               "--input_path", image]  # fmt: skip
    result = run_captured(command, cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"configs/metadata.json does not exist: {workdir} is not the bundle folder" in output, output[-3000:]
    assert "--bundle_root" in output


def test_whole_masks_with_class_positives_stop_before_any_work(run_bundle, phantom_dataset, tmp_path):
    args = ["--dataset_dir", phantom_dataset, "--mask_mode", "whole", "--positives", "class",
            "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval", *TINY_PRETRAIN_ARGS]
    result = run_bundle(["pretrain"], args, expect_success=False)
    assert result.returncode != 0
    assert "--mask_mode whole with --positives class" in result.log
    assert not (tmp_path / "models").exists()


# ---------------------------------------------------------------------------------------------------------------------
# reliability, second pass (issue 19): a run on the wrong data, classes or checkpoint stops instead of exiting 0
# ---------------------------------------------------------------------------------------------------------------------


def _dataset_variant(phantom_dataset: Path, dest: Path, edit=None, labels: dict | None = None) -> Path:
    """A dataset folder ``dest`` whose datalist names the phantom files by absolute path, changed by ``edit(lists)``;
    its ``dataset.json`` is the phantoms' with ``labels`` if given."""
    dest.mkdir()
    lists = read_json(phantom_dataset / "datalist.json")
    lists = {k: [{n: str(phantom_dataset / p) for n, p in e.items()} for e in v] for k, v in lists.items()}
    if edit is not None:
        edit(lists)
    (dest / "datalist.json").write_text(json.dumps(lists))
    dataset = read_json(phantom_dataset / "dataset.json")
    (dest / "dataset.json").write_text(json.dumps({**dataset, "labels": labels or dataset["labels"]}))
    return dest


def test_inference_never_writes_phantoms_into_a_mistyped_dataset_dir(run_bundle, tmp_path):
    """Finding 5: a mistyped --dataset_dir stops naming it; phantoms go only into the bundle's own data/phantoms."""
    typo = tmp_path / "phantomz"
    run = run_bundle(["inference"], [
        "--dataset_dir", typo, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "out", *TINY_INFERENCE_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"dataset_dir {typo} does not exist or is not a folder; check --dataset_dir.")
    assert not typo.exists() and not (tmp_path / "out").exists()


def test_dataset_whose_class_ids_mean_other_organs_is_refused(run_bundle, phantom_dataset, tmp_path):
    """Finding 3: same class count, ids 2 and 3 gallbladder and pancreas: training stops with both class lists."""
    swapped = ["spleen", "gallbladder", "pancreas", "right kidney", "liver", "stomach", "aorta", "left kidney"]
    labels = {"0": "background", **{str(i + 1): name for i, name in enumerate(swapped)}}
    dataset = _dataset_variant(phantom_dataset, tmp_path / "data", labels=labels)
    run = run_bundle(["train"], [
        "--dataset_dir", dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"{dataset / 'dataset.json'} names its classes differently from this run's class_names",
                       "2: 'gallbladder' (dataset) vs 'right kidney' (class_names)", f"Dataset: {swapped}")
    assert not (tmp_path / "models" / "model.pt").exists()


def test_labels_json_trains_a_model_of_the_datasets_own_classes(run_bundle, phantom_dataset, tmp_path):
    """Issue 22, point 15: ``--labels_json <dataset.json>`` (the BTCV recipe's form) names the run's classes."""
    renamed = ["organ a", "organ b", "organ c", "organ d", "organ e", "organ f", "organ g", "organ h"]
    labels = {"0": "background", **{str(i + 1): name for i, name in enumerate(renamed)}}
    dataset = _dataset_variant(phantom_dataset, tmp_path / "data", labels=labels)
    run_bundle(["train"], [
        "--dataset_dir", dataset, "--labels_json", dataset / "dataset.json", "--ckpt_dir", tmp_path / "models",
        "--output_dir", tmp_path / "eval", "--max_epochs", "1", "--val_interval", "1", *TINY_TRAIN_ARGS,
    ])
    summary = json.loads((tmp_path / "eval" / "run_summary.json").read_text(encoding="utf-8"))
    assert list(summary["per_class"]["val_mean_dice"]) == renamed
    assert (tmp_path / "models" / "model.pt").is_file()


def _respelled(entry: dict) -> dict:
    """The entry's paths spelled another way: ``<folder>/../<folder>/<name>``."""
    return {k: str(Path(v).parent / ".." / Path(v).parent.name / Path(v).name) for k, v in entry.items()}


def _leak_training_images(lists: dict) -> None:
    """Validation gets a pretraining and a finetuning image, test a finetuning one, each spelled differently."""
    lists["validation"] += [_respelled(lists["pretrain"][0]), _respelled(lists["finetune_4"][0])]
    lists["test"] += [_respelled(lists["finetune_4"][0])]


@pytest.mark.parametrize(
    "configs, args, lists",
    [
        (["train"], TINY_TRAIN_ARGS, "'finetune_4' and 'validation'"),
        (["pretrain"], TINY_PRETRAIN_ARGS, "'pretrain' and 'validation'"),
        (["train", "evaluate"], TINY_TRAIN_ARGS, "'test' and 'finetune_4'"),
    ],
    ids=["train", "pretrain", "evaluate"],
)
def test_training_image_in_a_held_out_list_is_refused(run_bundle, phantom_dataset, tmp_path, configs, args, lists):
    """Finding 4: a training image also in the validation or test list (spelled differently) stops the run."""
    dataset = _dataset_variant(phantom_dataset, tmp_path / "data", edit=_leak_training_images)
    run = run_bundle(configs, [
        "--dataset_dir", dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", *args,
    ], expect_success=False)
    _assert_fails_with(run, f"datalist {dataset / 'datalist.json'}: lists {lists} share 1 image file(s)")


@pytest.mark.parametrize("configs", [["train"], ["pretrain"], ["inference"]], ids=["train", "pretrain", "inference"])
def test_init_filters_the_network_cannot_use_names_the_setting(run_bundle, phantom_dataset, tmp_path, configs):
    """Finding 10: ``--init_filters 4`` failed in GroupNorm ("num_channels (4) must be divisible by num_groups (8)")."""
    run = run_bundle(configs, [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--init_filters", "4",
    ], expect_success=False)
    _assert_fails_with(run, "init_filters must be a positive multiple of 8 (SegResNet's group normalisation")


def test_train_resume_with_another_split_and_learning_rate_is_refused(run_bundle, phantom_dataset, trained_model, tmp_path):
    """Finding 2: another train_key and learning rate in the same ckpt_dir resumed the finished run and exited 0,
    keeping its model.pt while the run summary named the new settings."""
    ckpt_dir, output_dir = copy_run(trained_model.ckpt_dir, trained_model.output_dir, tmp_path)
    before = {path: path.read_bytes() for path in (ckpt_dir / "model.pt", output_dir / "run_summary.json")}
    run = run_bundle(["train"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", ckpt_dir, "--output_dir", output_dir, "--max_epochs", "2",
        "--val_interval", "1", "--train_key", "finetune_1", "--learning_rate", "0.01", *TINY_TRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, f"checkpoint {ckpt_dir / 'checkpoint_epoch=2.pt'} belongs to a run with other settings",
                       "train_key 'finetune_4' then, 'finetune_1' now", "learning_rate 0.001 then, 0.01 now",
                       "training_images", "--ckpt_dir", "--resume false")
    assert {path: path.read_bytes() for path in before} == before


def test_pretrain_resume_with_another_method_setting_is_refused(run_bundle, phantom_dataset, pretrained_pool, tmp_path):
    """Finding 2, pretraining's resume folder: another mask mode would have continued the finished run."""
    ckpt_dir, output_dir = copy_run(pretrained_pool.ckpt_dir, pretrained_pool.output_dir, tmp_path)
    encoder = (ckpt_dir / "pretrained_encoder.pt").read_bytes()
    run = run_bundle(["pretrain"], [
        "--dataset_dir", phantom_dataset, "--ckpt_dir", ckpt_dir, "--output_dir", output_dir, "--max_epochs", "2",
        "--mask_mode", "bbox", *TINY_PRETRAIN_ARGS,
    ], expect_success=False)
    _assert_fails_with(run, "belongs to a run with other settings: mask_mode 'exact' then, 'bbox' now")
    assert (ckpt_dir / "pretrained_encoder.pt").read_bytes() == encoder
