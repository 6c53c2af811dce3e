"""Organ x contrast-phase class ids: the transform, the phases of a datalist, and the pretraining pipeline's labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from conftest import CONFIGS
from semcl_components.bundle_runtime.datalists import load_datalist, with_contrast_phases
from semcl_components.transforms import GroupClassIds, GroupClassIdsd
from semcl_phantoms.anatomy import CONTRAST_PHASES


def test_joint_ids_are_organ_plus_group_times_organs_and_background_stays_zero():
    joint = GroupClassIds(num_foreground=8)
    assert joint(torch.tensor([0, 1, 3, 8]), group=2).tolist() == [0, 17, 19, 24]
    assert joint(np.array([1, 2]), group=0).tolist() == [1, 2]
    assert isinstance(joint(np.array([1]), group=1), np.ndarray)
    with pytest.raises(ValueError, match="0..8"):
        joint(torch.tensor([9]), group=0)
    with pytest.raises(ValueError, match=">= 0"):
        joint(torch.tensor([1]), group=-1)


def test_dictionary_twin_reads_the_group_and_names_the_file_without_one():
    transform = GroupClassIdsd(groups=CONTRAST_PHASES, num_foreground=8)
    out = transform({"class_ids": torch.tensor([2, 5]), "contrast_phase": "portal_venous"})
    assert out["class_ids"].tolist() == [18, 21]
    image = MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": "/data/case_7.nii.gz"})
    with pytest.raises(ValueError, match=r"case_7.nii.gz.*'contrast_phase' must be one of.*has 'delayed'"):
        transform({"class_ids": torch.tensor([1]), "contrast_phase": "delayed", "image": image})
    with pytest.raises(ValueError, match="has none"):
        transform({"class_ids": torch.tensor([1])})
    with pytest.raises(ValueError, match="distinct"):
        GroupClassIdsd(groups=["a", "a"], num_foreground=8)


def test_phases_come_from_the_entry_or_the_dataset_json(phantom_dataset, tmp_path):
    items = load_datalist(phantom_dataset / "datalist.json", "pretrain", phantom_dataset)
    recorded = json.loads((phantom_dataset / "dataset.json").read_text(encoding="utf-8"))["generator"]["contrast_phases"]
    phased = with_contrast_phases(items, phantom_dataset)
    for item in phased:
        case = item["image"].rsplit("/", 1)[-1].removesuffix(".nii.gz")
        assert item["contrast_phase"] == recorded[case] and item["contrast_phase"] in CONTRAST_PHASES
    own = with_contrast_phases([{**items[0], "contrast_phase": "arterial"}], tmp_path)  # no dataset.json needed
    assert own[0]["contrast_phase"] == "arterial"
    with pytest.raises(ValueError, match=r"image /x/case_9.nii.gz has no 'contrast_phase'.*case 'case_9'"):
        with_contrast_phases([{"image": "/x/case_9.nii.gz"}], tmp_path)


def test_pretraining_views_carry_organ_x_phase_labels(phantom_dataset):
    """With contrast_phase_labels the objects of a view are labelled organ + 8 x phase, after the left-right flip."""
    from monai.bundle import ConfigParser

    def pipeline(**overrides):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "pretrain.yaml"))
        parser.read_meta(str(CONFIGS / "metadata.json"))
        parser.update({"bundle_root": str(CONFIGS.parent), "dataset_dir": str(phantom_dataset),
                       "patch_size": [32, 32, 32], "view_size": [24, 24, 24], "min_voxels": 8, **overrides})
        return parser.get_parsed_content("train#dataset")

    dataset = pipeline(contrast_phase_labels="true")  # as typed on the command line
    phase = dataset.data[0]["contrast_phase"]
    views = [view for crop in dataset[0] for view in crop]
    ids = torch.cat([torch.as_tensor(v["class_ids"]) for v in views])
    offset = 8 * CONTRAST_PHASES.index(phase)
    assert ids.numel() > 0 and ((ids > offset) & (ids <= offset + 8)).all(), (phase, ids.tolist())
    plain = pipeline()
    assert "contrast_phase" not in plain.data[0]
    assert all(1 <= int(i) <= 8 for crop in plain[0] for view in crop for i in view["class_ids"])
