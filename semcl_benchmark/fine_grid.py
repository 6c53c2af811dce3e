"""Stage 1 at the fine grid (benchmark v3): its label maps scored there and written there as the cascade's priors.

v3's image-only arms (stage 1, ``scratch``) train and predict at the coarse ``stage1_pixdim`` (5.625 mm), while every
arm is scored on the label files as generated (2.8125 mm; docs/PROTOCOL_v3.md, section 2). A coarse label map is
taken onto its test label's grid through the two affines, nearest neighbour (MONAI ``ResampleToMatch``): each fine
voxel takes the class of the coarse voxel whose centre is nearest in scanner coordinates. Dice is MONAI's
``DiceMetric`` per organ (background left out; an organ absent from the case's label scores ``None``, left out of the
case's mean), as v2's endpoint and the bundle's ``MeanDice`` count it.

Stage 1's predictions used as priors (pool, validation and test cases) are made the cascade's way instead
(:meth:`semcl_components.cascade.CascadeInferer.prior`: the fine image taken to stage 1's grid, the logits brought
back linearly before the argmax) and written on each case's own grid, where stage 2 and the pretraining read them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from semcl_tools.repository import CONFIGS

__all__ = ["Stage1Session", "case_dice", "label_file_scores", "nearest_onto", "stage1_fine_grid_scores",
           "write_stage1_predictions"]


def nearest_onto(labels: MetaTensor, reference: MetaTensor) -> MetaTensor:
    """``labels`` ``(1, *coarse)`` (a label map with its affine) on the grid of ``reference`` ``(C, *fine)``:
    ``(1, *fine)``, nearest neighbour through both affines; voxels outside ``labels``' extent are background."""
    from monai.transforms import ResampleToMatch

    resample = ResampleToMatch(mode="nearest", padding_mode="zeros", dtype=torch.float32)
    return resample(labels.float(), img_dst=reference)


def case_dice(prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> list[float | None]:
    """Dice of each organ (classes ``1 .. num_classes - 1``) of one case: ``prediction`` and ``label`` are label maps
    ``(1, *S)`` on one grid; ``None`` for an organ absent from ``label`` (MONAI's ``ignore_empty``)."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    def encoded(labels: torch.Tensor) -> torch.Tensor:
        return one_hot(torch.as_tensor(labels)[None].round().long(), num_classes)

    values = DiceMetric(include_background=False, reduction="none")(encoded(prediction), encoded(label))[0]
    return [None if torch.isnan(v) else round(float(v), 6) for v in values]


class Stage1Session:
    """A trained stage-1 network with the bundle's validation pipeline (``train.yaml``'s ``validate#preprocessing``
    and ``validate#inferer``) at the grid of ``overrides``' ``pixdim``, in this process.

    Args:
        checkpoint: the stage-1 network's weights (``models/model.pt`` of its run).
        overrides: bundle settings (data, datalist, network, ``roi_size``, ``pixdim``: the grid cases are read at).
        threads: CPU threads.
        device: ``cpu`` or ``cuda`` (default: a GPU if there is one).
    """

    def __init__(self, checkpoint: Path, overrides: Mapping, threads: int = 1, device: str | None = None) -> None:
        from monai.bundle import ConfigParser

        torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.yaml"))
        parser.read_meta(str(CONFIGS / "metadata.json"))
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()}
        parser.update({"bundle_root": str(CONFIGS.parent), **settings})
        parser["validate#dataset#progress"] = False  # in the benchmark's own process: no bar between its lines
        self.parser = parser
        self.network = parser.get_parsed_content("network_def").to(self.device).eval()
        state = torch.load(checkpoint, map_location=self.device, weights_only=True)
        self.network.load_state_dict(state.get("model", state))
        self.inferer = parser.get_parsed_content("validate#inferer")
        self.num_classes = parser.get_parsed_content("num_classes")

    def cases(self, split: str) -> list[dict]:
        """The datalist's ``split`` read as the bundle validates (image and label ``(1, *S)`` at ``pixdim``)."""
        self.parser["val_key"] = split  # (setting an item resets what was parsed: the dataset is read anew)
        with warnings.catch_warnings():  # MONAI's notice of Orientationd's changed default, once per process
            warnings.simplefilter("ignore", FutureWarning)
            return list(self.parser.get_parsed_content("validate#dataset"))

    def label_map(self, image: MetaTensor) -> MetaTensor:
        """Stage 1's label map ``(1, *S)`` of ``image`` ``(C, *S)``, on its grid (its affine)."""
        with torch.no_grad():
            logits = self.inferer(image[None].as_tensor().to(self.device), self.network)
        return MetaTensor(logits.argmax(1).cpu().float(), affine=image.affine)

    def cascade_label_map(self, image: MetaTensor, stage1_scale: float) -> MetaTensor:
        """Stage 1's label map ``(1, *S)`` of a fine ``image`` ``(C, *S)`` made the cascade's way
        (:meth:`semcl_components.cascade.CascadeInferer.prior`: the image taken to stage 1's grid, ``stage1_scale``
        of the input's per voxel edge, the logits brought back linearly before the argmax), on ``image``'s grid."""
        from semcl_components.cascade import CascadeInferer

        cascade = CascadeInferer(self.inferer, None, None, image_channels=image.shape[0], stage1_scale=stage1_scale)
        with torch.no_grad():
            prior = cascade.prior(image[None].as_tensor().to(self.device), self.network)
        return MetaTensor(prior[0].cpu().float(), affine=image.affine)


def stage1_fine_grid_scores(session: Stage1Session, class_names: Sequence[str]) -> dict:
    """Test Dice at the fine grid of a stage-1 network read at its coarse grid: each test case predicted there
    (:meth:`Stage1Session.label_map`), taken onto its label file's grid (:func:`nearest_onto`) and scored there
    (:func:`case_dice`).

    Returns:
        ``{"cases": [test image file names], "classes": class_names, "dice": [[per organ] per case]}``.
    """
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True, ensure_channel_first=True)
    names, dice = [], []
    for case in session.cases("test"):
        fine_label = load(case["label"].meta["filename_or_obj"])
        prediction = nearest_onto(session.label_map(case["image"]), fine_label)
        dice.append(case_dice(prediction, fine_label, session.num_classes))
        names.append(Path(case["image"].meta["filename_or_obj"]).name)
    return {"cases": names, "classes": list(class_names), "dice": dice}


def label_file_scores(predictions: Mapping[str, Path], labels: Mapping[str, Path], class_names: Sequence[str]) -> dict:
    """Dice of label map files on their labels' grids (:func:`case_dice`), e.g. stage 1's test predictions made the
    cascade's way: the trilinear-logit score of stage 1, descriptive beside its nearest-neighbour endpoint.

    Args:
        predictions: ``{case id: label map file}``, each on its label's grid.
        labels: ``{case id: label file}`` of the same cases.
        class_names: the organs, in class order.

    Returns:
        ``{"cases": [case ids], "classes": class_names, "dice": [[per organ] per case]}``.
    """
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True, ensure_channel_first=True)
    dice = [case_dice(load(predictions[case]), load(labels[case]), len(class_names) + 1) for case in predictions]
    return {"cases": list(predictions), "classes": list(class_names), "dice": dice}


def write_stage1_predictions(session: Stage1Session, splits: Sequence[str], stage1_scale: float,
                             folder: Path) -> dict[str, dict[str, Path]]:
    """Stage 1's label maps of the cases of ``splits``, read at the fine grid (``session``'s ``pixdim``), made the
    cascade's way (:meth:`Stage1Session.cascade_label_map`) and written on each case's label file's grid (shape and
    affine; nearest neighbour, which undoes only the validation pipeline's padding) as ``<folder>/<case>.nii.gz``
    (uint8).

    Returns:
        ``{split: {case id: file}}``.
    """
    from monai.transforms import LoadImage, SaveImage

    from .run_records import case_id

    load = LoadImage(image_only=True, ensure_channel_first=True)
    save = SaveImage(output_dir=folder, output_postfix="", output_ext=".nii.gz", output_dtype=np.uint8,
                     resample=False, separate_folder=False, print_log=False)
    written: dict[str, dict[str, Path]] = {}
    for split in splits:
        written[split] = {}
        for case in session.cases(split):
            fine_label = load(case["label"].meta["filename_or_obj"])
            case_name = case_id(case["image"].meta["filename_or_obj"])
            prediction = nearest_onto(session.cascade_label_map(case["image"], stage1_scale), fine_label)
            prediction.meta = {**fine_label.meta, "filename_or_obj": f"{case_name}.nii.gz"}
            save(prediction.to(torch.uint8))
            written[split][case_name] = folder / f"{case_name}.nii.gz"
    return written
