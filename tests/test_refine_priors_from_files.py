"""Stage 2's validation on priors read from files (`train_refine.yaml --validation_prior file`, issue 37): each
validation entry's `prior` label map becomes that case's coarse prior, checked against its image; the fixed simulated
priors stay the default."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import BUNDLE_DIR, TINY_TRAIN_ARGS
from test_bundle_conformance import parsed_settings

REFINE = ["train.yaml", "train_refine.yaml"]
CROP = ["--refine_crop_size", "[24,24,24]"]
CASE = "phantom_007"


def _preprocessing(phantom_dataset: Path, validation_prior: str):
    values = parsed_settings(BUNDLE_DIR, REFINE, ("validate#preprocessing",), dataset_dir=str(phantom_dataset),
                             validation_prior=validation_prior)
    return values["validate#preprocessing"]


def _case(phantom_dataset: Path, prior: Path | None = None) -> dict:
    case = {"image": str(phantom_dataset / "imagesTr" / f"{CASE}.nii.gz"),
            "label": str(phantom_dataset / "labelsTr" / f"{CASE}.nii.gz")}
    return case if prior is None else {**case, "prior": str(prior)}


def _write_prior(phantom_dataset: Path, path: Path, drop: int | None = None, shift_mm: float = 0.0,
                 add: int | None = None) -> Path:
    """The case's label map as a prior file: organ ``drop`` removed, the grid shifted, a voxel set to ``add``."""
    label = nib.load(phantom_dataset / "labelsTr" / f"{CASE}.nii.gz")
    values, affine = np.asarray(label.dataobj).copy(), label.affine.copy()
    if drop is not None:
        values[values == drop] = 0
    if add is not None:
        values[0, 0, 0] = add
    affine[0, 3] += shift_mm
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(values, affine), path)
    return path


def test_a_file_prior_is_the_networks_second_channel(phantom_dataset, tmp_path):
    preprocessing = _preprocessing(phantom_dataset, "file")
    exact = preprocessing(_case(phantom_dataset, _write_prior(phantom_dataset, tmp_path / "exact.nii.gz")))
    assert exact["image"].shape[0] == 2  # [image, prior]
    assert torch.equal(exact["image"][1], exact["label"][0].to(exact["image"].dtype))
    without_aorta = preprocessing(_case(phantom_dataset, _write_prior(phantom_dataset, tmp_path / "a.nii.gz", drop=7)))
    prior, label = without_aorta["image"][1], without_aorta["label"][0]
    assert 7 in label.unique() and 7 not in prior.unique()
    assert torch.equal(prior[label != 7], label[label != 7].to(prior.dtype))


def test_the_default_prior_is_simulated_from_the_label(phantom_dataset):
    out = _preprocessing(phantom_dataset, "simulated")(_case(phantom_dataset))
    assert out["image"].shape[0] == 2
    prior, label = out["image"][1], out["label"][0]
    assert not torch.equal(prior, label.to(prior.dtype))  # degraded: not the label itself
    assert set(prior.unique().long().tolist()) <= set(range(9))


def _refusal(preprocessing, case: dict) -> str:
    """The message of the check that stopped ``preprocessing`` (MONAI's ``Compose`` wraps it in a RuntimeError)."""
    with pytest.raises(RuntimeError) as info:
        preprocessing(case)
    error: BaseException = info.value
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def test_file_priors_that_are_missing_or_do_not_fit_are_refused_naming_the_file(phantom_dataset, tmp_path):
    preprocessing = _preprocessing(phantom_dataset, "file")
    image = _case(phantom_dataset)["image"]
    assert _refusal(preprocessing, _case(phantom_dataset)).startswith(f"ValueError: image {image} has no 'prior'")
    absent = tmp_path / "absent.nii.gz"
    assert _refusal(preprocessing, _case(phantom_dataset, absent)) == f"FileNotFoundError: {absent}: no such file or folder."
    shifted = _write_prior(phantom_dataset, tmp_path / "shifted.nii.gz", shift_mm=5.0)
    assert f"prior {shifted} does not fit image {image}: they differ in position" in _refusal(
        preprocessing, _case(phantom_dataset, shifted))
    foreign = _write_prior(phantom_dataset, tmp_path / "foreign.nii.gz", add=12)
    assert f"prior {foreign} does not fit image {image}: values [12.0] are not class ids 0..8" in _refusal(
        preprocessing, _case(phantom_dataset, foreign))


def test_an_unknown_validation_prior_is_refused():
    from semcl_components.bundle_runtime.workflow_settings import RefineSettings

    assert RefineSettings(check_command_line=False).validation_prior == "simulated"
    with pytest.raises(ValueError, match="--validation_prior must be one of simulated, file, got 'stage1'"):
        RefineSettings(validation_prior="stage1", check_command_line=False)


def test_refine_training_validates_on_the_datalists_prior_files(run_bundle, phantom_dataset, tmp_path):
    """The workflow reads the validation entry's prior: an organ missing from that file is named by the inferer."""
    datalist = json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))
    (validation,) = datalist["validation"]
    case = Path(validation["image"]).name.split(".")[0]
    label = nib.load(phantom_dataset / validation["label"])
    values = np.asarray(label.dataobj).copy()
    values[values == 7] = 0  # a stage 1 that missed the aorta
    prior = tmp_path / "priors" / f"{case}_seg.nii.gz"
    prior.parent.mkdir()
    nib.save(nib.Nifti1Image(values, label.affine), prior)
    datalist["validation"] = [{**validation, "prior": str(prior)}]
    (tmp_path / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    args = ["--dataset_dir", phantom_dataset, "--data_list_file_path", tmp_path / "datalist.json",
            "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval", "--max_epochs", "1",
            "--validation_prior", "file", *TINY_TRAIN_ARGS, *CROP]
    run = run_bundle(["train", "train_refine"], args)
    channel_def = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))[
        "network_data_format"]["outputs"]["pred"]["channel_def"]
    missed = [channel_def[str(k)] for k in range(1, len(channel_def)) if k not in values]  # the aorta, and any other
    assert "aorta" in missed and f"the prior has no {', '.join(missed)}: left as they are" in run.log
    assert "val_mean_dice" in run.log

    datalist["validation"] = [validation]  # no prior for the validation case: stopped before any training
    (tmp_path / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    args[args.index("--ckpt_dir") + 1] = tmp_path / "models_2"
    run = run_bundle(["train", "train_refine"], args, expect_success=False)
    assert run.returncode != 0 and "has no 'prior'" in run.log and validation["image"].split("/")[-1] in run.log


def test_the_validation_priors_are_part_of_what_a_resume_must_match(phantom_dataset):
    """model.pt is the epoch with the best validation Dice: a run resumed with other priors would mix two scales."""
    for source in ("simulated", "file"):
        values = parsed_settings(BUNDLE_DIR, REFINE, ("train#resumer#run_settings",),
                                 dataset_dir=str(phantom_dataset), validation_prior=source)
        assert values["train#resumer#run_settings"]["validation_prior"] == source
