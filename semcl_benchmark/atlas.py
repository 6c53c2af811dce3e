"""The atlas baseline: no training, a majority vote of the seed's labelled maps moved onto each test image.

What a segmentation network has to beat to show that it learned anything: each labelled map of the setting is moved
onto the test image's grid (nearest neighbour; outside the map is background) and every voxel takes the label most
maps give it (a tie goes to the lower class id, background first). How a map is moved (``registration``):

    as_is      scanner coordinates: the voxel at the same physical position (the images' affines)
    body_box   the labelled image's body bounding box scaled, per axis, onto the test image's
    centroid   the labelled image's body centroid moved onto the test image's (a translation)

The body is every voxel above :data:`BODY_HU` (-500 HU: soft tissue, fat, bone; not air or lung), found in the
images alone, so the registration never looks at a test label. Images and labels are read and checked as the bundle's
workflows read and check them (:mod:`semcl_components.bundle_runtime.input_checks`: a missing, cut or non-finite file, an image of
other channels or dimensions, a label value that is no class, a label of background only, a label on another grid
than its image stop the run naming the file; then RAS, resampled to ``pixdim``), and Dice is MONAI's ``DiceMetric``
without background, as the bundle's ``MeanDice``: a class absent from a test label map scores NaN, left out of means.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import VoteEnsemble, generate_spatial_bounding_box
from scipy.ndimage import affine_transform, center_of_mass

__all__ = ["BODY_HU", "atlas_registration", "evaluate_atlas", "majority_vote", "move_label_map"]

BODY_HU = -500.0
"""Voxels above this (HU) are the body: the organ-independent landmark of the ``body_box`` and ``centroid`` maps."""


def _body(image: np.ndarray) -> np.ndarray:
    body = image > BODY_HU
    if not body.any():
        raise ValueError(f"no voxel above {BODY_HU} HU: the image holds no body to register (is it CT in HU?).")
    return body


def atlas_registration(
    registration: str,
    atlas_image: np.ndarray,
    test_image: np.ndarray,
    atlas_affine: np.ndarray,
    test_affine: np.ndarray,
) -> np.ndarray:
    """The 4 x 4 map from test voxel indices to atlas voxel indices.

    Args:
        registration: ``as_is``, ``body_box`` or ``centroid`` (module docstring).
        atlas_image, test_image: (X, Y, Z) intensities in HU.
        atlas_affine, test_affine: their voxel-to-world affines (4 x 4), used by ``as_is``.
    """
    if registration == "as_is":
        return np.linalg.inv(np.asarray(atlas_affine, float)) @ np.asarray(test_affine, float)
    atlas_body, test_body = _body(atlas_image), _body(test_image)
    matrix = np.eye(4)
    if registration == "centroid":
        matrix[:3, 3] = np.subtract(center_of_mass(atlas_body), center_of_mass(test_body))
        return matrix
    if registration == "body_box":
        (a_low, a_end), (t_low, t_end) = (
            np.asarray(generate_spatial_bounding_box(b[None])) for b in (atlas_body, test_body)
        )
        scale = (a_end - a_low - 1) / np.maximum(t_end - t_low - 1, 1)  # the boxes' ends are exclusive
        matrix[:3, :3] = np.diag(scale)
        matrix[:3, 3] = a_low - scale * t_low
        return matrix
    raise ValueError(f"atlas registration must be as_is, body_box or centroid, got {registration!r}.")


def move_label_map(label: np.ndarray, test_to_atlas: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``label`` (X, Y, Z) sampled (nearest neighbour) on a grid of ``shape``; outside ``label`` is background (0).

    ``test_to_atlas`` maps the grid's voxel indices to ``label``'s (4 x 4), as ``scipy.ndimage.affine_transform`` takes
    it; ``grid-constant``: a voxel whose nearest ``label`` voxel lies outside it is background.
    """
    return affine_transform(label, test_to_atlas, output_shape=tuple(shape), order=0, mode="grid-constant", cval=0)


def majority_vote(label_maps: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Per voxel the class most of ``label_maps`` (each (X, Y, Z), ids 0..num_classes-1) give; ties: lower id.

    MONAI's ``VoteEnsemble`` (the argmax of the maps' mean one-hot: it holds ``len(label_maps) * num_classes`` float
    copies of the grid).
    """
    vote = VoteEnsemble(num_classes=num_classes)
    return vote([torch.as_tensor(np.asarray(label_map))[None] for label_map in label_maps])[0].numpy()


def _load(
    entries: Sequence[dict], dataset_dir: str | os.PathLike, pixdim: Sequence[float], num_classes: int, split: str
) -> list[dict]:
    """Images and labels as the bundle's workflows read and check them: the bundle's input checks (the error names
    the file), then channel first, RAS, resampled to ``pixdim``. ``split`` names the entries in messages."""
    from monai.transforms import LoadImaged, Orientationd, Spacingd

    from semcl_components.bundle_runtime.input_checks import CheckFiled, CheckGeometryd, CheckImaged, CheckLabeld

    keys = ["image", "label"]
    steps = [  # each called directly: MONAI's Compose would hide the check's message behind 'applying transform'
        CheckFiled(keys=keys),
        LoadImaged(keys=keys, ensure_channel_first=True, image_only=True),
        CheckImaged(keys="image", num_channels=1),
        CheckLabeld(keys="label", num_classes=num_classes, require_foreground=True),
        CheckGeometryd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=list(pixdim), mode=["bilinear", "nearest"]),
    ]
    cases = []
    for index, entry in enumerate(entries):
        missing = [key for key in keys if not entry.get(key)]
        if missing:
            raise ValueError(f"the atlas needs an image and a label: {split} entry {index} ({entry}) has no {missing[0]}.")
        data = {key: os.path.join(dataset_dir, entry[key]) for key in keys}
        for step in steps:
            data = step(data)
        cases.append(
            {
                "name": os.path.basename(entry["image"]),
                "path": os.path.join(dataset_dir, entry["image"]),
                "image": data["image"][0].numpy(),
                "label": np.rint(data["label"][0].numpy()).astype(np.int64),
                "affine": np.asarray(data["image"].affine, dtype=float),
            }
        )
    return cases


def evaluate_atlas(
    registration: str,
    labelled: Sequence[dict],
    test: Sequence[dict],
    dataset_dir: str | os.PathLike,
    pixdim: Sequence[float],
    class_names: Sequence[str],
) -> dict:
    """Per-case, per-class test Dice and the voxel confusion matrix of the atlas of ``labelled`` on ``test``.

    Args:
        registration: ``as_is``, ``body_box`` or ``centroid``.
        labelled, test: datalist entries (``image``, ``label`` relative to ``dataset_dir``).
        dataset_dir: the dataset folder.
        pixdim: the grid the bundle's workflows resample to (mm).
        class_names: the foreground class names (ids 1..K).

    Returns:
        ``{"test": {"cases", "classes", "dice"}, "test_summary": {"val_mean_dice": {class: mean}},
        "confusion_matrix": {"classes", "counts"}}``, laid out as a fine-tuning run's result.
    """
    from ignite.metrics import ConfusionMatrix
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    num_classes = len(class_names) + 1
    atlases = _load(labelled, dataset_dir, pixdim, num_classes, "labelled")
    metric = DiceMetric(include_background=False, reduction="none")
    # ignite's, as the bundle's ConfusionMatrixWriter: a row per true class, a column per predicted class
    confusion = ConfusionMatrix(num_classes)
    cases, dice = [], []
    for case in _load(test, dataset_dir, pixdim, num_classes, "test"):
        moved = []
        for atlas in atlases:
            try:
                matrix = atlas_registration(registration, atlas["image"], case["image"], atlas["affine"], case["affine"])
            except ValueError as error:  # e.g. an image without a body: which of the two
                raise ValueError(f"atlas {atlas['path']} onto test image {case['path']}: {error}") from error
            moved.append(move_label_map(atlas["label"], matrix, case["label"].shape))
        prediction = majority_vote(moved, num_classes)
        as_one_hot = [one_hot(torch.as_tensor(x)[None, None], num_classes) for x in (prediction, case["label"])]
        scores = metric(*as_one_hot)[0]
        dice.append([None if torch.isnan(v) else round(float(v), 6) for v in scores])
        cases.append(case["name"])
        confusion.update((as_one_hot[0], torch.as_tensor(case["label"])[None]))
    means = {
        name: (None if not values else round(float(np.mean(values)), 4))
        for name, values in ((n, [row[i] for row in dice if row[i] is not None]) for i, n in enumerate(class_names))
    }
    return {
        "test": {"cases": cases, "classes": list(class_names), "dice": dice},
        "test_summary": {"val_mean_dice": means},
        "confusion_matrix": {"classes": ["background", *class_names], "counts": confusion.compute().tolist()},
    }
