"""Left-right flips swap the paired labels: a flipped right kidney comes out on the left, labelled left kidney."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged, Orientationd

from semcl_components.transforms import RandLateralFlipd, SwapLabels, lateral_pairs
from semcl_phantoms.anatomy import LABEL_NAMES

BTCV = ["spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
        "inferior vena cava", "portal vein and splenic vein", "pancreas", "right adrenal gland", "left adrenal gland"]


def test_pairs_are_found_from_the_class_names():
    assert lateral_pairs(BTCV) == [(2, 3), (12, 13)]
    assert lateral_pairs(["Right Kidney", "liver", "left kidney"]) == [(1, 3)]
    assert lateral_pairs(["right kidney", "liver"]) == []  # no partner
    assert lateral_pairs(["brightness"]) == []  # "right" only as a whole word


def test_swap_labels_in_a_map_and_in_a_vector_keeps_the_type():
    label = MetaTensor(torch.tensor([[0.0, 2.0, 3.0, 5.0]]), meta={"filename_or_obj": "seg.nii.gz"})
    swapped = SwapLabels([(2, 3)])(label)
    assert isinstance(swapped, MetaTensor) and swapped.meta["filename_or_obj"] == "seg.nii.gz"
    assert swapped.tolist() == [[0.0, 3.0, 2.0, 5.0]]
    ids = np.array([1, 2, 3], dtype=np.int64)
    assert SwapLabels([(2, 3)])(ids).tolist() == [1, 3, 2] and ids.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="disjoint"):
        SwapLabels([(2, 3), (3, 4)])


def test_flip_moves_image_label_and_masks_together_and_swaps_class_ids():
    image = torch.arange(8.0).reshape(1, 8, 1, 1).expand(1, 8, 2, 2).clone()
    label = torch.zeros(1, 8, 2, 2)
    label[0, 1] = 2  # right kidney at index 1
    masks = (label == 2).float()
    flipped = RandLateralFlipd(keys=["image", "label", "masks"], pairs=[(2, 3)], label_keys=["label", "class_ids"],
                               prob=1.0)({"image": image, "label": label, "masks": masks, "class_ids": torch.tensor([2])})
    assert flipped["image"][0, :, 0, 0].tolist() == list(range(7, -1, -1))
    assert (flipped["label"] == 3).nonzero()[:, 1].unique().tolist() == [6]  # now at the mirrored index, left kidney
    assert not (flipped["label"] == 2).any()
    assert torch.equal(flipped["masks"], (flipped["label"] == 3).float())
    assert flipped["class_ids"].tolist() == [3]


def test_without_a_flip_nothing_changes():
    label = torch.tensor([[[[2.0]], [[3.0]]]])
    out = RandLateralFlipd(keys=["label"], pairs=[(2, 3)], prob=0.0)({"label": label})
    assert torch.equal(out["label"], label)


def test_a_phantom_right_kidney_flipped_is_a_left_kidney_on_the_left(phantom_dataset):
    """On the RAS grid of the bundle, axis 0 points to the patient's right (world +x in RAS)."""
    ids = {name: label for label, name in LABEL_NAMES.items()}
    right, left = ids["right kidney"], ids["left kidney"]
    case = {"label": str(phantom_dataset / "labelsTr" / "phantom_001.nii.gz")}
    label = Orientationd(keys="label", axcodes="RAS")(LoadImaged(keys="label", ensure_channel_first=True)(case))["label"]

    def centre_x(volume, value):
        return float((volume[0] == value).nonzero()[:, 0].float().mean())

    assert centre_x(label, right) > centre_x(label, left)  # the phantom's right kidney lies on the patient's right
    flipped = RandLateralFlipd(keys="label", pairs=lateral_pairs([LABEL_NAMES[k] for k in range(1, len(LABEL_NAMES))]), prob=1.0)({"label": label})["label"]
    size = label.shape[1] - 1
    # the voxels of the right kidney are now mirrored to the left side and labelled left kidney
    assert centre_x(flipped, left) == pytest.approx(size - centre_x(label, right))
    assert centre_x(flipped, right) == pytest.approx(size - centre_x(label, left))
    assert centre_x(flipped, right) > centre_x(flipped, left)
