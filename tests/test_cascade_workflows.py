"""The paper's pipeline end to end through the bundle's commands, on tiny phantoms: `channel` pretraining on
organ-centred crops -> stage 1 -> stage 2 from the pretrained encoder (every tensor loaded, the mask channel too) ->
both stages on a test image; a user's prior instead of stage 1; a prior that does not fit refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import TINY_NETWORK_ARGS, TINY_PRETRAIN_ARGS, TINY_TRAIN_ARGS, RunOutputs, _session_run

CROP = ["--refine_crop_size", "[24,24,24]"]


@pytest.fixture(scope="module")
def object_pretrained(run_bundle, phantom_dataset: Path, tmp_path_factory) -> RunOutputs:
    """`channel`-mode pretraining on organ-centred crops with simulated coarse masks, 2 epochs."""
    settings = "--max_epochs 2 --embedding_mode channel --crop_mode object --object_prior simulated"
    args = [
        "--dataset_dir",
        phantom_dataset,
        *settings.split(),
        "--embedding_quality_interval",
        "0",
        *TINY_PRETRAIN_ARGS,
    ]
    args[args.index("--patch_size") + 1] = "[24,24,24]"
    args[args.index("--view_size") + 1] = "[16,16,16]"
    return _session_run(run_bundle, tmp_path_factory, "pretrain_object", ["pretrain"], args)


@pytest.fixture(scope="module")
def refined(run_bundle, phantom_dataset: Path, object_pretrained: RunOutputs, tmp_path_factory) -> RunOutputs:
    """Stage 2 trained from the object-crop encoder, 2 epochs, validation every epoch."""
    args = [
        "--dataset_dir",
        phantom_dataset,
        "--max_epochs",
        "2",
        "--val_interval",
        "1",
        "--pretrained_encoder",
        object_pretrained.ckpt_dir / "pretrained_encoder.pt",
        *TINY_TRAIN_ARGS,
        *CROP,
    ]
    return _session_run(run_bundle, tmp_path_factory, "train_refine", ["train", "train_refine"], args)


def _cascade(run_bundle, trained_model, refined, image: Path, output: Path, *extra, expect_success=True):
    args = [
        "--input_path",
        image,
        "--ckpt_dir",
        trained_model.ckpt_dir,
        "--refine_ckpt_dir",
        refined.ckpt_dir,
        "--output_dir",
        output,
        *TINY_NETWORK_ARGS,
        "--roi_size",
        "[32,32,32]",
        "--sw_batch_size",
        "1",
        *CROP,
        *extra,
    ]
    return run_bundle(["inference", "inference_cascade"], args, expect_success=expect_success)


def test_object_crop_pretraining_makes_one_sample_per_organ(object_pretrained):
    summary = json.loads((object_pretrained.output_dir / "run_summary.json").read_text(encoding="utf-8"))
    assert (object_pretrained.ckpt_dir / "pretrained_encoder.pt").is_file()
    assert "num_objects" in object_pretrained.run.log and summary.get("embedding_mode") == "channel"


def test_refine_training_loads_the_channel_encoder_whole(refined):
    summary = json.loads((refined.output_dir / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["encoder_load"]["loaded_fraction"] == 1.0 and summary["encoder_load"]["skipped"] == 0
    assert (refined.ckpt_dir / "model.pt").is_file()
    assert "val_mean_dice" in refined.run.log


def test_cascade_segments_in_the_input_geometry(run_bundle, trained_model, refined, phantom_dataset, tmp_path):
    image = phantom_dataset / "imagesTr" / "phantom_007.nii.gz"
    _cascade(run_bundle, trained_model, refined, image, tmp_path / "out")
    (written,) = (tmp_path / "out").glob("*_seg.nii.gz")
    source, result = nib.load(image), nib.load(written)
    assert result.shape == source.shape and np.allclose(result.affine, source.affine)
    assert result.get_data_dtype() == np.uint8 and int(np.asarray(result.dataobj).max()) <= 8


def test_cascade_in_channels_last_writes_the_same_segmentation(
    run_bundle, trained_model, refined, phantom_dataset, tmp_path
):
    image = phantom_dataset / "imagesTr" / "phantom_007.nii.gz"
    written = {}
    for channels_last in ("false", "true"):  # both stages' networks and crops reordered
        _cascade(run_bundle, trained_model, refined, image, tmp_path / channels_last, "--channels_last", channels_last)
        (written[channels_last],) = (tmp_path / channels_last).glob("*_seg.nii.gz")
    contiguous, channels_last = (np.asarray(nib.load(written[k]).dataobj) for k in ("false", "true"))
    # the same arithmetic up to float rounding: where two organs' refined probabilities are all but equal (a tiny
    # network's), the stitching may pick the other one (2 of 32,768 voxels when measured); never more than 0.1%
    assert len(np.unique(contiguous)) > 2 and np.mean(contiguous != channels_last) <= 1e-3


def test_cascade_refines_a_user_prior_instead_of_stage_1(run_bundle, trained_model, refined, phantom_dataset, tmp_path):
    image = phantom_dataset / "imagesTr" / "phantom_007.nii.gz"
    prior = tmp_path / "priors" / "phantom_007_seg.nii.gz"  # a folder of priors, named as stage 1 names its output
    prior.parent.mkdir()
    label = nib.load(phantom_dataset / "labelsTr" / "phantom_007.nii.gz")
    missing = np.asarray(label.dataobj).copy()
    missing[missing == 7] = 0  # the user's prior misses the aorta
    nib.save(nib.Nifti1Image(missing, label.affine), prior)
    run = _cascade(run_bundle, trained_model, refined, image, tmp_path / "out", "--prior", prior.parent)
    assert "the prior has no aorta" in run.log  # named: stage 2 has no crop for it
    (written,) = (tmp_path / "out").glob("*_seg.nii.gz")
    assert 7 not in np.unique(np.asarray(nib.load(written).dataobj))  # and it stays missing


def test_cascade_refuses_a_prior_of_another_grid(run_bundle, trained_model, refined, phantom_dataset, tmp_path):
    image = phantom_dataset / "imagesTr" / "phantom_007.nii.gz"
    label = nib.load(phantom_dataset / "labelsTr" / "phantom_007.nii.gz")
    shifted = label.affine.copy()
    shifted[0, 3] += 5.0
    prior = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj), shifted), prior)
    run = _cascade(run_bundle, trained_model, refined, image, tmp_path / "out", "--prior", prior, expect_success=False)
    assert run.returncode != 0
    assert f"prior {prior} does not fit image {image}: they differ in position or orientation" in run.log
    assert not list((tmp_path / "out").glob("*_seg.nii.gz"))
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_cascade_evaluation_scores_both_stages_per_organ(run_bundle, trained_model, refined, phantom_dataset, tmp_path):
    configs = ["train", "train_refine", "evaluate", "evaluate_cascade"]
    args = [
        "--dataset_dir",
        phantom_dataset,
        "--ckpt_dir",
        refined.ckpt_dir,
        "--stage1_ckpt",
        trained_model.ckpt_dir / "model.pt",
        "--output_dir",
        tmp_path / "eval",
        *TINY_TRAIN_ARGS,
        *CROP,
        "--channels_last",  # both stages' networks in channels-last order: the wiring runs, the scores are the same
        "true",
    ]
    run = run_bundle(configs, args)
    summary = json.loads((tmp_path / "eval" / "evaluation_summary.json").read_text(encoding="utf-8"))
    assert set(summary["per_class"]["val_mean_dice"]) >= {"spleen", "liver", "pancreas"}
    assert {"val_hd95", "val_surface_dice"} <= set(summary["per_class"])
    assert "Restored all variables from" in run.log and str(trained_model.ckpt_dir / "model.pt") in run.log
