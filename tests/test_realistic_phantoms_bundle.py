"""The bundle's workflows on the ``realistic`` phantom preset (issue 20): its physical spacing, its four contrast-phase
buckets (``delayed`` included) and its non-cubic volumes go through pretraining, fine-tuning and inference."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import TINY_INFERENCE_ARGS, TINY_PRETRAIN_ARGS, TINY_TRAIN_ARGS

SIZE = (48, 48, 36)  # 7.5 mm voxels over the preset's 360 x 360 x 270 mm field of view


@pytest.fixture(scope="module")
def realistic_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """8 realistic phantoms and their spacing (mm), as the bundle's ``pixdim``."""
    from semcl_phantoms.phantoms import write_phantom_dataset

    folder = tmp_path_factory.mktemp("realistic") / "dataset"
    summary = write_phantom_dataset(folder, num=8, seed=3, size=SIZE, preset="realistic", verbose=False)
    spacing = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["generator"]["spacing_mm"]
    assert summary["num_subjects"] == 8 and spacing == [7.5, 7.5, 7.5]
    return folder, spacing


def test_pretrain_finetune_and_inference_run_at_the_dataset_spacing(run_bundle, realistic_dataset, tmp_path):
    folder, spacing = realistic_dataset
    pixdim = ["--pixdim", json.dumps(spacing)]
    phases = {entry["contrast_phase"] for entry in json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["training"]}
    assert phases <= {"native", "arterial", "portal_venous", "delayed"}
    run_bundle(["pretrain"], [
        "--dataset_dir", folder, "--ckpt_dir", tmp_path / "pre", "--output_dir", tmp_path / "pre_eval",
        "--max_epochs", "1", "--contrast_phase_labels", "true", *pixdim, *TINY_PRETRAIN_ARGS,
    ])
    encoder = tmp_path / "pre" / "pretrained_encoder.pt"
    assert encoder.is_file()
    run_bundle(["train"], [
        "--dataset_dir", folder, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval",
        "--max_epochs", "1", "--val_interval", "1", "--pretrained_encoder", encoder, *pixdim, *TINY_TRAIN_ARGS,
    ])
    run_bundle(["inference"], [
        "--dataset_dir", folder, "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "seg",
        *pixdim, *TINY_INFERENCE_ARGS,
    ])
    for entry in json.loads((folder / "datalist.json").read_text(encoding="utf-8"))["test"]:
        image = nib.load(folder / entry["image"])
        seg = nib.load(tmp_path / "seg" / (Path(entry["image"]).name.removesuffix(".nii.gz") + "_seg.nii.gz"))
        assert seg.shape == image.shape == SIZE
        np.testing.assert_allclose(seg.affine, image.affine, atol=1e-4)
        np.testing.assert_allclose(seg.header.get_zooms(), spacing)
