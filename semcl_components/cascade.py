"""Stage 2 of a coarse-to-fine cascade: refine every organ of a prior label map in its own organ-centred crop.

The paper's segmentation is a refinement (Lee et al., arXiv 2106.01596, and its authors' code): the network sees
``[image, coarse mask of organ k]`` around organ ``k`` and outputs that organ's mask; one network serves every organ.
nnU-Net's cascade has the same shape (a low-resolution stage's output is an input of the full-resolution stage).
:class:`OrganRefinementInferer` is that stage as a MONAI inferer, so MONAI's evaluators, post-transforms and metrics
use it unchanged: it crops each organ of the prior (:class:`~semcl_components.transforms.ObjectCrops`), runs the
network on the crops in batches, samples each organ's foreground probability back onto the input grid
(:func:`~semcl_components.transforms.paste_from_box`) and returns class scores whose argmax is the stitched label map.
:class:`CascadeInferer` runs both stages in one call: stage 1 (image-only segmentation, on a coarser grid) makes the
prior, unless the input brings one (a user's label file, an annotator's rough label).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_tensor

from .transforms.object_crops import ObjectCrops, crop_mask, crop_to_box, paste_from_box, voxel_spacing

__all__ = ["CascadeInferer", "OrganRefinementInferer", "stitch_scores"]

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
            )
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
        image_channels: ``C``: an input with ``C + 1`` channels brings its prior as the last channel, and stage 1 is
            skipped.
        stage1_scale: stage 1's grid relative to the input's, per voxel edge (``0.5``: stage 1 sees the image at
            half the resolution, e.g. 5.625 mm for a 2.8125 mm input); its logits are brought back by linear
            interpolation before the argmax.

    ``__call__(inputs, network)``: ``inputs`` ``(B, C, *S)`` or ``(B, C + 1, *S)``; ``network`` is stage 1's.
    Returns stage 2's ``(B, num_classes, *S)`` class scores (see :func:`stitch_scores`).
    """

    def __init__(
        self,
        stage1_inferer: Callable[..., torch.Tensor],
        refine_inferer: OrganRefinementInferer,
        refine_network: Callable[..., torch.Tensor],
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
        """Stage 1's label map ``(B, 1, *S)`` of ``(B, C, *S)`` images."""
        spatial = image.shape[2:]
        if self.stage1_scale < 1:
            coarse = [max(1, round(s * self.stage1_scale)) for s in spatial]
            image = F.interpolate(image, size=coarse, mode="trilinear" if len(spatial) == 3 else "bilinear")
        logits = convert_to_tensor(self.stage1_inferer(image, network), track_meta=False)
        if tuple(logits.shape[2:]) != tuple(spatial):
            logits = F.interpolate(logits, size=list(spatial), mode="trilinear" if len(spatial) == 3 else "bilinear")
        return logits.argmax(1, keepdim=True).to(image.dtype)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        channels = inputs.shape[1]
        if channels not in (self.image_channels, self.image_channels + 1):
            raise ValueError(
                f"inputs must have {self.image_channels} image channels, or one more holding a prior, "
                f"got shape {tuple(inputs.shape)}."
            )
        if channels == self.image_channels:
            inputs = torch.cat([inputs, self.prior(inputs, network)], dim=1)
        if isinstance(self.refine_network, torch.nn.Module):
            self.refine_network.eval()
        return self.refine_inferer(inputs, self.refine_network)
