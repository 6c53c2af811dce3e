"""The cascade's evaluation with priors from each source (`evaluate_cascade.yaml --test_prior stage1|file|oracle`,
issue 37): stage 1 inside the cascade, each test entry's `prior` file, or one fixed simulated coarse mask per case
from its ground truth (the oracle), the same in every run."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import SegResNet

from conftest import BUNDLE_DIR, TINY_TRAIN_ARGS
from test_bundle_conformance import parsed_settings

CASCADE_EVALUATION = ["train.yaml", "train_refine.yaml", "evaluate.yaml", "evaluate_cascade.yaml"]
CROP = ["--refine_crop_size", "[24,24,24]"]


def _parsed(phantom_dataset: Path, keys: tuple[str, ...], **overrides) -> dict:
    return parsed_settings(BUNDLE_DIR, CASCADE_EVALUATION, keys, dataset_dir=str(phantom_dataset), **overrides)


def _test_case(phantom_dataset: Path) -> dict:
    (entry,) = json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))["test"]
    return {key: str(phantom_dataset / entry[key]) for key in ("image", "label")}


def _prior_channel(phantom_dataset: Path, case: dict, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """The preprocessed case's prior channel and label map, with ``overrides``."""
    out = _parsed(phantom_dataset, ("validate#preprocessing",), **overrides)["validate#preprocessing"](case)
    assert out["image"].shape[0] == 2  # [image, prior]
    return out["image"][1], out["label"][0]


def test_stage1_priors_leave_the_image_alone(phantom_dataset):
    out = _parsed(phantom_dataset, ("validate#preprocessing",))["validate#preprocessing"](_test_case(phantom_dataset))
    assert out["image"].shape[0] == 1  # stage 1 makes the prior inside the cascade


def test_file_priors_are_read_from_the_entries(phantom_dataset):
    case = _test_case(phantom_dataset)
    prior, label = _prior_channel(phantom_dataset, {**case, "prior": case["label"]}, test_prior="file")
    assert torch.equal(prior, label.to(prior.dtype))
    preprocessing = _parsed(phantom_dataset, ("validate#preprocessing",), test_prior="file")["validate#preprocessing"]
    with pytest.raises(RuntimeError) as refused:
        preprocessing(case)
    assert f"image {case['image']} has no 'prior'" in str(refused.value.__cause__)


def test_oracle_priors_are_one_fixed_draw_per_case_whatever_the_seed(phantom_dataset, tmp_path):
    case = _test_case(phantom_dataset)
    oracle, label = _prior_channel(phantom_dataset, case, test_prior="oracle")
    again, _ = _prior_channel(phantom_dataset, case, test_prior="oracle", seed=7)  # another run's training seed
    assert torch.equal(oracle, again)
    assert not torch.equal(oracle, label.to(oracle.dtype))  # degraded, as train_refine's validation priors
    assert set(oracle.unique().long().tolist()) - {0} <= set(label.unique().long().tolist())
    other, _ = _prior_channel(phantom_dataset, case, test_prior="oracle", oracle_prior_seed=1)
    assert not torch.equal(oracle, other)
    # the same case in another folder (a copy of the dataset) gets the same prior: the draw follows the file name
    copy = tmp_path / "copy"
    copy.mkdir()
    for key in ("image", "label"):
        (copy / f"{key}_dir").mkdir()
        (copy / f"{key}_dir" / Path(case[key]).name).write_bytes(Path(case[key]).read_bytes())
    moved = {key: str(copy / f"{key}_dir" / Path(case[key]).name) for key in ("image", "label")}
    assert torch.equal(_prior_channel(phantom_dataset, moved, test_prior="oracle")[0], oracle)


def test_stage_1_is_loaded_only_for_its_own_priors(phantom_dataset):
    from semcl_components.bundle_runtime.handlers import WeightsLoader

    def stage1_loaders(test_prior: str) -> list:
        handlers = _parsed(phantom_dataset, ("validate#handlers", "stage1_ckpt"), test_prior=test_prior)
        return [h for h in handlers["validate#handlers"]
                if isinstance(h, WeightsLoader) and h.load_path == handlers["stage1_ckpt"]]

    assert len(stage1_loaders("stage1")) == 1
    assert stage1_loaders("file") == [] and stage1_loaders("oracle") == []


def test_an_unknown_test_prior_is_refused():
    from semcl_components.bundle_runtime.workflow_settings import CascadeSettings

    assert CascadeSettings(check_command_line=False).test_prior == "stage1"
    with pytest.raises(ValueError, match="--test_prior must be one of stage1, file, oracle, got 'simulated'"):
        CascadeSettings(test_prior="simulated", check_command_line=False)


def _dice(prior: torch.Tensor, label: torch.Tensor, organ: int) -> float:
    a, b = prior == organ, label == organ
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_the_evaluation_scores_the_chosen_priors(run_bundle, phantom_dataset, tmp_path):
    """--refine false scores the priors themselves: a prior file equal to the label scores 1 for every organ; the
    oracle's scores are those of the in-process oracle prior (the same draw in another process, with another seed);
    stage 1's weights are never read (its file does not exist)."""
    case = _test_case(phantom_dataset)
    datalist = json.loads((phantom_dataset / "datalist.json").read_text(encoding="utf-8"))
    datalist["test"] = [{**entry, "prior": entry["label"]} for entry in datalist["test"]]
    (tmp_path / "datalist.json").write_text(json.dumps(datalist), encoding="utf-8")
    network = SegResNet(spatial_dims=3, in_channels=2, out_channels=2, init_filters=8, blocks_down=(1, 1, 1),
                        blocks_up=(1, 1))
    (tmp_path / "refine").mkdir()
    torch.save({"model": network.state_dict()}, tmp_path / "refine" / "model.pt")
    channel_def = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text(encoding="utf-8"))[
        "network_data_format"]["outputs"]["pred"]["channel_def"]
    label = np.asarray(nib.load(case["label"]).dataobj)
    present = {channel_def[str(k)]: k for k in range(1, len(channel_def)) if k in label}

    def evaluate(test_prior: str, *extra) -> dict:
        output = tmp_path / f"eval_{test_prior}"
        args = ["--dataset_dir", phantom_dataset, "--data_list_file_path", tmp_path / "datalist.json",
                "--ckpt_dir", tmp_path / "refine", "--stage1_ckpt", tmp_path / "no_stage1.pt", "--output_dir", output,
                "--refine", "false", "--test_prior", test_prior, *extra, *TINY_TRAIN_ARGS, *CROP]
        run_bundle(["train", "train_refine", "evaluate", "evaluate_cascade"], args)
        summary = json.loads((output / "evaluation_summary.json").read_text(encoding="utf-8"))
        return summary["per_class"]["val_mean_dice"]

    from_file = evaluate("file")
    assert {name: from_file[name] for name in present} == pytest.approx(dict.fromkeys(present, 1.0))
    oracle = evaluate("oracle", "--seed", "5")
    roi_size = json.loads(TINY_TRAIN_ARGS[TINY_TRAIN_ARGS.index("--roi_size") + 1])  # the grid is padded to it
    prior, truth = _prior_channel(phantom_dataset, case, test_prior="oracle", roi_size=roi_size)
    expected = {name: _dice(prior, truth, k) for name, k in present.items()}
    assert {name: oracle[name] for name in present} == pytest.approx(expected, abs=1e-4)
    assert min(expected.values()) < 0.99  # the oracle's priors are coarse, not the truth
