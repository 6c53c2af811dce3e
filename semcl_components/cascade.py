"""Stage 2 of a coarse-to-fine cascade: refine every organ of a prior label map in its own organ-centred crop.

The paper's segmentation is a refinement (Lee et al., arXiv 2106.01596, and its authors' code): the network sees
``[image, coarse mask of organ k]`` around organ ``k`` and outputs that organ's mask; one network serves every organ.
nnU-Net's cascade has the same shape (a low-resolution stage's output is an input of the full-resolution stage).
:class:`OrganRefinementInferer` is that stage as a MONAI inferer, so MONAI's evaluators, post-transforms and metrics
use it unchanged: it crops each organ of the prior (:class:`~semcl_components.transforms.ObjectCrops`), runs the
network on the crops in batches, samples each organ's foreground probability back onto the input grid
(:func:`~semcl_components.transforms.paste_from_box`) and returns class scores whose argmax is the stitched label map.
:class:`CascadeInferer` runs both stages in one call: stage 1 (image-only segmentation, on a coarser grid) makes the
prior, unless the input brings one (a user's label file, an annotator's rough label: :func:`attach_priors` pairs the
files with the images, :class:`CheckPriord` refuses a prior that does not fit its image).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import MapTransform, ResampleToMatch, Spacing
from monai.utils import convert_to_tensor

from .bundle_runtime.inference_files import case_name
from .bundle_runtime.input_checks import grid_difference
from .networks.memory_format import batch_to_kwargs
from .transforms.object_crops import ObjectCrops, crop_mask, crop_to_box, paste_from_box, voxel_spacing

__all__ = ["CascadeInferer", "CheckPriord", "OrganRefinementInferer", "attach_priors", "stitch_scores"]

_LOGGER = logging.getLogger(__name__)


def stitch_scores(
    prior: torch.Tensor, refined: dict[int, tuple[torch.Tensor, torch.Tensor]], num_classes: int, threshold: float = 0.5
) -> torch.Tensor:
    """Class scores ``(num_classes, *S)`` whose argmax is the cascade's label map.

    Where a refined crop covers a voxel, the voxel goes to the organ with the highest refined probability if that
    probability exceeds ``threshold``, else to the background; elsewhere it keeps the prior's label.

    Args:
        prior: ``(*S)`` integer labels of the first stage (or of a user's or annotator's rough label).
        refined: organ id -> (``(*S)`` foreground probability, ``(*S)`` boolean coverage of its crop).
        num_classes: classes including the background.
        threshold: the probability above which a refined organ wins a voxel.
    """
    prior = convert_to_tensor(prior, track_meta=False).long()
    scores = torch.zeros((num_classes, *prior.shape), dtype=torch.float32, device=prior.device)
    scores.scatter_(0, prior[None].clamp(0, num_classes - 1), 1.0)
    covered_any = torch.zeros_like(prior, dtype=torch.bool)
    for _, covered in refined.values():
        covered_any |= covered
    scores[:, covered_any] = 0.0
    scores[0, covered_any] = threshold
    for organ, (probability, covered) in refined.items():
        scores[organ][covered] = probability[covered].float()
    return scores


class OrganRefinementInferer(Inferer):
    """Refine each organ of a prior label map in its organ-centred crop, then stitch (see the module docstring).

    Args:
        crop_size: the refinement network's crop grid (``ObjectCrops``).
        num_classes: classes including the background (the output's channels).
        margin, min_extent_mm, min_voxels: the crops' geometry (``ObjectCrops``).
        batch_size: crops per network call.
        threshold: see :func:`stitch_scores`.
        class_names: organ names for the log (index ``k - 1`` for organ ``k``).
        channels_last: hand the network its crops in ``torch.channels_last_3d`` memory order (for a network stored so,
            :func:`~semcl_components.networks.network_on_device`: the same arithmetic, faster on a CPU).

    ``__call__(inputs, network)``: ``inputs`` ``(B, C + 1, *S)``: the ``C`` image channels, then the prior label map
    (integer ids in a float channel); a ``MetaTensor``'s affine gives the voxel spacing. ``network`` maps
    ``(N, C + 1, *crop_size)`` (image crop, the prior's mask of one organ) to ``(N, 2, *crop_size)`` logits
    (background, organ). Returns ``(B, num_classes, *S)`` class scores (see :func:`stitch_scores`). An organ absent
    from the prior keeps no voxel; the log names it (the first stage missed it).
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        num_classes: int,
        margin: float = 0.25,
        min_extent_mm: float = 0.0,
        min_voxels: int = 1,
        batch_size: int = 4,
        threshold: float = 0.5,
        class_names: Sequence[str] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too: at least 2, got {num_classes}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.cropper = ObjectCrops(
            crop_size, margin, min_extent_mm, classes=range(1, num_classes), min_voxels=min_voxels
        )
        self.num_classes, self.batch_size, self.threshold = int(num_classes), int(batch_size), float(threshold)
        self.class_names = list(class_names) if class_names is not None else None
        self.to_kwargs = batch_to_kwargs(channels_last)

    def _name(self, organ: int) -> str:
        names = self.class_names
        return names[organ - 1] if names is not None and 0 < organ <= len(names) else f"class {organ}"

    def _spacing(self, inputs: torch.Tensor, b: int) -> tuple[float, ...]:
        if isinstance(inputs, MetaTensor) and inputs.is_batch:
            return voxel_spacing(MetaTensor(inputs.as_tensor()[b], affine=inputs.affine[b]), inputs.ndim - 2)
        return voxel_spacing(inputs, inputs.ndim - 2)

    def refine(
        self, image: torch.Tensor, prior: torch.Tensor, spacing: Sequence[float], network: Callable[..., torch.Tensor]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Organ id -> (foreground probability ``(*S)``, crop coverage ``(*S)``) for one ``(C, *S)`` image and its
        ``(1, *S)`` prior."""
        boxes = self.cropper.boxes(prior, spacing)
        missed = [k for k in range(1, self.num_classes) if k not in dict(boxes)]
        if missed:
            _LOGGER.warning(
                "the prior has no %s: left as they are, with nothing to refine",
                ", ".join(self._name(k) for k in missed),
            )
        refined = {}
        size = self.cropper.crop_size
        for start in range(0, len(boxes), self.batch_size):
            chunk = boxes[start : start + self.batch_size]
            crops = torch.stack(
                [torch.cat([crop_to_box(image, box, size), crop_mask(prior, k, box, size)]) for k, box in chunk]
            ).contiguous(**self.to_kwargs)
            probabilities = torch.softmax(convert_to_tensor(network(crops), track_meta=False).float(), dim=1)[:, 1:2]
            for (k, box), probability in zip(chunk, probabilities):
                values, covered = paste_from_box(probability, box, prior.shape[1:])
                refined[k] = (values[0], covered)
        return refined

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim < 4 or inputs.shape[1] < 2:
            raise ValueError(
                f"inputs must be (B, C + 1, *spatial): image channels then the prior label map, got "
                f"{tuple(inputs.shape)}."
            )
        plain = convert_to_tensor(inputs, track_meta=False)
        outputs = []
        for b in range(plain.shape[0]):
            image, prior = plain[b, :-1], plain[b, -1:].round().long()
            refined = self.refine(image, prior, self._spacing(inputs, b), network)
            outputs.append(stitch_scores(prior[0], refined, self.num_classes, self.threshold))
        return torch.stack(outputs)


class CascadeInferer(Inferer):
    """Both stages of the cascade: stage 1's label map (or a given prior) refined organ by organ by stage 2.

    Args:
        stage1_inferer: how stage 1 runs (e.g. a ``SlidingWindowInferer`` over its ``roi_size``).
        refine_inferer: stage 2 (:class:`OrganRefinementInferer`).
        refine_network: stage 2's network (``(N, C + 1, *crop)`` -> ``(N, 2, *crop)``); put in eval mode here.
            ``None``: no refinement, the prior itself (stage 1 alone on the input's grid, to measure what stage 2
            adds).
        image_channels: ``C``: an input with ``C + 1`` channels brings its prior as the last channel, and stage 1 is
            skipped.
        stage1_scale: stage 1's grid relative to the input's, per voxel edge (``0.5``: stage 1 sees the image at
            half the resolution, e.g. 5.625 mm for a 2.8125 mm input), resampled as the stage-1 workflows'
            ``Spacingd`` and ``Invertd`` do (:meth:`prior`); its logits are brought back linearly before the argmax.

    ``__call__(inputs, network)``: ``inputs`` ``(B, C, *S)`` or ``(B, C + 1, *S)``; ``network`` is stage 1's.
    Returns stage 2's ``(B, num_classes, *S)`` class scores (see :func:`stitch_scores`).
    """

    def __init__(
        self,
        stage1_inferer: Callable[..., torch.Tensor],
        refine_inferer: OrganRefinementInferer,
        refine_network: Callable[..., torch.Tensor] | None,
        image_channels: int = 1,
        stage1_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < stage1_scale <= 1:
            raise ValueError(
                f"stage1_scale must be in (0, 1] (stage 1 is as fine as the input or coarser), got {stage1_scale}."
            )
        self.stage1_inferer, self.refine_inferer = stage1_inferer, refine_inferer
        self.refine_network, self.image_channels, self.stage1_scale = refine_network, int(image_channels), stage1_scale

    def prior(self, image: torch.Tensor, network: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Stage 1's label map ``(B, 1, *S)`` of ``(B, C, *S)`` images.

        With ``stage1_scale < 1`` the images go to stage 1's grid as the stage-1 workflows' ``Spacingd`` takes them
        there (voxel ``i`` of the coarse grid on voxel ``i / stage1_scale`` of the input, origins shared), and the
        logits come back as ``Invertd`` brings them (linear, border values beyond the last coarse voxel): stage 1 sees
        the grid it was trained on, not one shifted by half a coarse voxel.
        """
        if self.stage1_scale == 1:
            logits = convert_to_tensor(self.stage1_inferer(image, network), track_meta=False)
            return logits.argmax(1, keepdim=True).to(image.dtype)
        fine = [MetaTensor(convert_to_tensor(item, track_meta=False), affine=torch.eye(4)) for item in image]
        to_stage1 = Spacing(pixdim=[1 / self.stage1_scale] * (image.ndim - 2), mode="bilinear", padding_mode="border")
        coarse = [to_stage1(item) for item in fine]
        logits = self.stage1_inferer(torch.stack([convert_to_tensor(c, track_meta=False) for c in coarse]), network)
        back = ResampleToMatch(mode="bilinear", padding_mode="border")
        labels = [
            back(MetaTensor(convert_to_tensor(scores, track_meta=False), affine=c.affine), img_dst=f).argmax(0, True)
            for scores, c, f in zip(logits, coarse, fine)
        ]
        return torch.stack([convert_to_tensor(label, track_meta=False) for label in labels]).to(image.dtype)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        channels = inputs.shape[1]
        if channels not in (self.image_channels, self.image_channels + 1):
            raise ValueError(
                f"inputs must have {self.image_channels} image channels, or one more holding a prior, "
                f"got shape {tuple(inputs.shape)}."
            )
        if channels == self.image_channels:
            inputs = torch.cat([inputs, self.prior(inputs, network)], dim=1)
        if self.refine_network is None:  # stage 1 alone, on the input's grid: its label map as one-hot scores
            prior = convert_to_tensor(inputs[:, -1], track_meta=False).round().long()
            return (
                F.one_hot(prior.clamp(0, self.refine_inferer.num_classes - 1), self.refine_inferer.num_classes)
                .movedim(-1, 1)
                .float()
            )
        if isinstance(self.refine_network, torch.nn.Module):
            self.refine_network.eval()
        return self.refine_inferer(inputs, self.refine_network)


def attach_priors(items: Sequence[Mapping], prior: str | os.PathLike, prior_key: str = "prior") -> list[dict]:
    """Pair each inference item (``{"image": path}``) with its prior label file.

    Args:
        items: the inference datalist (e.g. ``bundle_runtime.inference_files.inference_inputs``).
        prior: a label file (for a single image) or a folder holding, for image ``CASE.*``, ``CASE.*`` or
            ``CASE_seg.*`` (a stage 1 or an earlier run's output).
        prior_key: where the prior's path goes.

    Raises:
        FileNotFoundError: ``prior`` does not exist, or a folder has no prior for an image (naming both).
        ValueError: a single prior file for several images.
    """
    prior = Path(prior)
    if not prior.exists():
        raise FileNotFoundError(f"--prior {prior} does not exist.")
    if prior.is_file():
        if len(items) != 1:
            raise ValueError(
                f"--prior {prior} is one file for {len(items)} images: give a folder of priors, one per "
                f"image (CASE.nii.gz or CASE_seg.nii.gz)."
            )
        return [{**items[0], prior_key: str(prior.absolute())}]
    files = {case_name(p.name): p for p in sorted(prior.iterdir()) if p.is_file()}
    paired = []
    for item in items:
        case = case_name(item["image"])
        found = files.get(case) or files.get(f"{case}_seg")
        if found is None:
            raise FileNotFoundError(
                f"--prior {prior} holds no prior for image {item['image']} (looked for {case}.* and {case}_seg.*)."
            )
        paired.append({**item, prior_key: str(found.absolute())})
    return paired


class CheckPriord(MapTransform):
    """Refuse a prior label map that does not fit its image: another shape or affine than the image as it was read
    (its meta data's ``spatial_shape`` and ``original_affine``, so the image may have been resampled since), or values
    that are not class ids ``0..num_classes - 1``. The message names both files.

    Args:
        num_classes: classes including the background.
        image_key, prior_key: the image and the just-loaded prior (``MetaTensor`` with their file names in their meta).
        affine_tolerance: the largest difference between the two affines' entries (mm).
        allow_missing_keys: pass a sample without a prior through unchecked (inference: stage 1 makes its prior);
            false: a sample without one is refused, naming its image (validation or evaluation on priors from files).
    """

    def __init__(
        self,
        num_classes: int,
        image_key: str = "image",
        prior_key: str = "prior",
        affine_tolerance: float = 1e-3,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__([prior_key], allow_missing_keys)
        self.num_classes, self.image_key, self.prior_key = int(num_classes), image_key, prior_key
        self.affine_tolerance = float(affine_tolerance)

    @staticmethod
    def _as_read(volume: Any) -> tuple[tuple[int, ...], torch.Tensor, str]:
        """Spatial shape, affine and file name of ``volume`` as it was read."""
        meta = getattr(volume, "meta", {})
        shape = meta.get("spatial_shape", volume.shape[1:])
        affine = meta.get("original_affine", getattr(volume, "affine", torch.eye(4)))
        shape = tuple(int(v) for v in convert_to_tensor(shape, track_meta=False).tolist())
        return shape, convert_to_tensor(affine, track_meta=False).double(), str(meta.get("filename_or_obj", "?"))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if self.prior_key not in d:
            if self.allow_missing_keys:
                return d
            image_file = self._as_read(d[self.image_key])[2]
            raise ValueError(
                f"image {image_file} has no '{self.prior_key}': its datalist entry must name its prior label file "
                f"(a label map on the image's grid) under '{self.prior_key}'."
            )
        (image_shape, image_affine, image_file), (shape, affine, prior_file) = map(
            self._as_read, (d[self.image_key], d[self.prior_key])
        )
        where = f"prior {prior_file} does not fit image {image_file}"
        problem = grid_difference((shape, image_shape), (affine, image_affine), self.affine_tolerance)
        if problem:
            raise ValueError(f"{where}: they {problem}; resample the prior onto the image first.")
        values = torch.unique(convert_to_tensor(d[self.prior_key], track_meta=False))
        bad = [v for v in values.tolist() if v != int(v) or not 0 <= v < self.num_classes]
        if bad:
            raise ValueError(f"{where}: values {bad[:10]} are not class ids 0..{self.num_classes - 1}.")
        return d
