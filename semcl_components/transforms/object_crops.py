"""Organ-centred crops: one fixed-size crop per object of a (coarse) label map, and pasting crops back.

The paper's pipeline (Lee et al., arXiv 2106.01596; its code's organ-centred patches) trains and refines on patches
centred on one organ each: the patch holds the image and that organ's coarse mask, and the organ's class is the
sample's image-wise label. Organs range from the gallbladder (a few centimetres) to the liver (about 20 cm), so a
fixed physical patch would either miss most of the liver or show the gallbladder as a few voxels. Here each crop is
the organ's bounding box in the (coarse) mask, grown by a ``margin`` (a fraction of the box on each side, at least
``min_extent_mm`` in all), made isotropic in millimetres (the largest side decides, so shapes are not distorted), and
resampled onto a fixed ``crop_size`` grid: every organ fills its crop at a similar scale, one network serves them
all, and the cost per organ is constant. :func:`paste_from_box` samples a crop's values back onto the source grid
(the exact inverse of the same voxel mapping), which is how a cascade stitches refined organs into one label map.

- :class:`ObjectBox`: the geometry of one crop (centre and extent in source voxels);
- :func:`object_box`, :func:`crop_to_box`, :func:`crop_mask`, :func:`paste_from_box`: the functions;
- :class:`ObjectCrops` / :class:`ObjectCropsd`: every object of a prior label map as its own sample.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

__all__ = [
    "CROP_MODES",
    "ObjectBox",
    "ObjectCrops",
    "ObjectCropsd",
    "crop_affine",
    "crop_mask",
    "crop_to_box",
    "object_box",
    "paste_from_box",
    "voxel_spacing",
]


#: How pretraining cuts its samples: random ``patch``es holding several organs (each organ a sample), or one
#: ``object`` (organ-centred) crop per organ (:class:`ObjectCropsd`: the paper's patches).
CROP_MODES = ("patch", "object")


@dataclass(frozen=True)
class ObjectBox:
    """Where one crop lies in its source volume: centre and extent (per spatial dim) in source voxel coordinates.

    Crop voxel ``i`` (of ``n`` along a dim) samples source coordinate ``centre + ((i + 0.5) / n - 0.5) * extent``.
    """

    centre: tuple[float, ...]
    extent: tuple[float, ...]

    def as_tensor(self) -> torch.Tensor:
        """float64 ``(2 * dims,)``: centre then extent (what :class:`ObjectCropsd` stores with a sample)."""
        return torch.tensor([*self.centre, *self.extent], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor | Sequence[float]) -> ObjectBox:
        values = [float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]
        if len(values) % 2:
            raise ValueError(f"an object box is centre + extent (an even number of values), got {len(values)}.")
        half = len(values) // 2
        return cls(tuple(values[:half]), tuple(values[half:]))


def voxel_spacing(image: torch.Tensor, spatial_dims: int) -> tuple[float, ...]:
    """The voxel size (mm) of a ``MetaTensor`` from its affine; 1.0 per dim for a plain tensor or array."""
    if isinstance(image, MetaTensor):
        affine = convert_to_tensor(image.affine, track_meta=False).double()
        return tuple(float(v) for v in torch.linalg.norm(affine[:spatial_dims, :spatial_dims], dim=0))
    return (1.0,) * spatial_dims


def object_box(
    mask: torch.Tensor,
    crop_size: Sequence[int],
    spacing: Sequence[float] | None = None,
    margin: float = 0.25,
    min_extent_mm: float = 0.0,
) -> ObjectBox:
    """The crop around one object: its bounding box grown by ``margin``, isotropic in mm, shaped like ``crop_size``.

    Args:
        mask: ``(*S)`` boolean (or 0/1) mask of the object; must not be empty.
        crop_size: the crop grid, one entry per spatial dim (e.g. ``(64, 64, 64)``).
        spacing: voxel size in mm per dim (default 1).
        margin: added on each side, as a fraction of the box's largest side in mm.
        min_extent_mm: the crop's largest side is at least this many mm (small organs get context).

    Returns:
        An :class:`ObjectBox` whose extent in mm is ``edge * crop_size[d] / max(crop_size)`` along dim ``d``, with
        ``edge = max(largest side * (1 + 2 * margin), min_extent_mm)``: one mm scale for all dims.
    """
    mask = convert_to_tensor(mask, track_meta=False).bool()
    dims = mask.ndim
    spacing = tuple(float(s) for s in (spacing or (1.0,) * dims))
    if len(crop_size) != dims or len(spacing) != dims:
        raise ValueError(f"crop_size {tuple(crop_size)} and spacing {spacing} need one entry per spatial dim ({dims}).")
    if margin < 0 or min_extent_mm < 0:
        raise ValueError(f"margin and min_extent_mm must be >= 0, got {margin} and {min_extent_mm}.")
    found = torch.nonzero(mask)
    if found.numel() == 0:
        raise ValueError("object_box needs a non-empty mask.")
    low, high = found.amin(0).double(), found.amax(0).double()
    centre = (low + high) / 2.0
    side_mm = float(((high - low + 1.0) * torch.tensor(spacing, dtype=torch.float64)).max())
    edge_mm = max(side_mm * (1.0 + 2.0 * margin), float(min_extent_mm))
    largest = max(crop_size)
    extent = tuple(edge_mm * n / largest / s for n, s in zip(crop_size, spacing))
    return ObjectBox(tuple(float(c) for c in centre), extent)


def _crop_grid(box: ObjectBox, crop_size: Sequence[int], source_shape: Sequence[int], device) -> torch.Tensor:
    """``(1, *crop_size, dims)`` grid of normalised source coordinates, last dim ordered for ``grid_sample``."""
    axes = [
        box.centre[d] + ((torch.arange(n, dtype=torch.float64, device=device) + 0.5) / n - 0.5) * box.extent[d]
        for d, n in enumerate(crop_size)
    ]
    # normalised for grid_sample (align_corners=False): voxel x of n lies at (2x + 1) / n - 1
    coords = [(2.0 * x + 1.0) / s - 1.0 for x, s in zip(torch.meshgrid(*axes, indexing="ij"), source_shape)]
    return torch.stack(coords[::-1], dim=-1)[None]  # grid_sample's last dim is (x, y, z) = the last spatial dim first


def crop_affine(affine: torch.Tensor, box: ObjectBox, crop_size: Sequence[int]) -> torch.Tensor:
    """The world affine of a crop: ``affine`` (the source's voxel -> world) after the crop's voxel -> source-voxel
    mapping (scale ``extent / crop_size``, the first crop voxel's centre at its place in the source)."""
    dims = len(crop_size)
    scale = [e / n for e, n in zip(box.extent, crop_size)]
    mapping = torch.eye(dims + 1, dtype=torch.float64)
    for d in range(dims):
        mapping[d, d] = scale[d]
        mapping[d, dims] = box.centre[d] - box.extent[d] / 2.0 + scale[d] / 2.0
    return convert_to_tensor(affine, track_meta=False).double() @ mapping


def crop_to_box(
    volume: torch.Tensor, box: ObjectBox, crop_size: Sequence[int], mode: str = "bilinear", padding_mode: str = "border"
) -> torch.Tensor:
    """Resample the box of ``volume`` ``(C, *S)`` onto a ``(C, *crop_size)`` grid (``mode``: ``bilinear`` for
    images, ``nearest`` for label maps; ``padding_mode`` where the box leaves the volume: ``border`` or ``zeros``).
    A ``MetaTensor`` gives a ``MetaTensor`` whose affine places the crop in the same world (:func:`crop_affine`)."""
    source = convert_to_tensor(volume, track_meta=False)
    dtype = source.dtype if source.is_floating_point() else torch.float32
    grid = _crop_grid(box, crop_size, source.shape[1:], source.device).to(dtype)
    cropped = F.grid_sample(source[None].to(dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=False)[0]
    cropped = cropped if source.is_floating_point() else cropped.to(source.dtype)
    if isinstance(volume, MetaTensor):
        return MetaTensor(
            cropped,
            affine=crop_affine(volume.affine, box, crop_size).to(volume.affine.dtype),
            meta={k: v for k, v in volume.meta.items() if k != "affine"},
        )
    return cropped


def crop_mask(labels: torch.Tensor, class_id: int, box: ObjectBox, crop_size: Sequence[int]) -> torch.Tensor:
    """The crop of one object's mask: ``(labels == class_id)`` of ``(1, *S)`` labels as float 0/1 ``(1, *crop_size)``
    (nearest neighbour, zero outside the volume; a ``MetaTensor`` keeps its world placement)."""
    mask = (convert_to_tensor(labels, track_meta=False) == class_id).float()
    if isinstance(labels, MetaTensor):
        mask = MetaTensor(mask, affine=labels.affine, meta={k: v for k, v in labels.meta.items() if k != "affine"})
    return crop_to_box(mask, box, crop_size, mode="nearest", padding_mode="zeros")


def paste_from_box(
    crop: torch.Tensor, box: ObjectBox, source_shape: Sequence[int], mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a crop ``(C, *crop_size)`` back onto the source grid ``source_shape``: the inverse of
    :func:`crop_to_box`'s voxel mapping.

    Returns:
        ``values`` ``(C, *source_shape)`` (zero outside the box) and ``covered`` ``(*source_shape)`` boolean: the
        source voxels whose centre lies inside the box.
    """
    crop = convert_to_tensor(crop, track_meta=False)
    crop_size, dims = crop.shape[1:], len(source_shape)
    low = [max(0, int(np.floor(c - e / 2.0))) for c, e in zip(box.centre, box.extent)]
    high = [min(s, int(np.ceil(c + e / 2.0)) + 1) for c, e, s in zip(box.centre, box.extent, source_shape)]
    values = crop.new_zeros((crop.shape[0], *source_shape))
    covered = torch.zeros(tuple(source_shape), dtype=torch.bool, device=crop.device)
    if any(h <= lo for lo, h in zip(low, high)):
        return values, covered
    axes = [torch.arange(lo, h, dtype=torch.float64, device=crop.device) for lo, h in zip(low, high)]
    source = torch.meshgrid(*axes, indexing="ij")
    # crop coordinate of each source voxel (continuous crop voxel index), then normalised over the crop
    inside = torch.ones(source[0].shape, dtype=torch.bool, device=crop.device)
    coords = []
    for d in range(dims):
        u = ((source[d] - box.centre[d]) / box.extent[d] + 0.5) * crop_size[d] - 0.5
        coords.append((2.0 * u + 1.0) / crop_size[d] - 1.0)
        inside &= (coords[-1] >= -1.0) & (coords[-1] <= 1.0)
    grid = torch.stack(coords[::-1], dim=-1)[None].to(crop.dtype)
    sampled = F.grid_sample(crop[None], grid, mode=mode, padding_mode="border", align_corners=False)[0]
    region = tuple(slice(lo, h) for lo, h in zip(low, high))
    values[(slice(None), *region)] = sampled * inside
    covered[region] = inside
    return values, covered


class ObjectCrops(Transform):
    """Every object of a prior label map as its own organ-centred crop (see the module docstring).

    Args:
        crop_size: the crop grid (one entry per spatial dim).
        margin: see :func:`object_box`.
        min_extent_mm: see :func:`object_box`.
        classes: the object classes to crop (``None``: every non-zero value of the prior).
        min_voxels: an object with fewer voxels in the prior gets no crop.

    ``__call__(image, prior)`` with ``image`` ``(C, *S)`` (a ``MetaTensor`` gives the spacing) and ``prior``
    ``(1, *S)`` integer labels returns one tuple per object, classes ascending:
    ``(image crop (C, *crop_size), prior mask crop (1, *crop_size) float 0/1, class id, ObjectBox)``.
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        margin: float = 0.25,
        min_extent_mm: float = 0.0,
        classes: Sequence[int] | None = None,
        min_voxels: int = 1,
    ) -> None:
        self.crop_size = tuple(int(s) for s in crop_size)
        if any(s < 1 for s in self.crop_size):
            raise ValueError(f"crop_size must be positive, got {crop_size}.")
        if min_voxels < 1:
            raise ValueError(f"min_voxels must be >= 1, got {min_voxels}.")
        self.margin, self.min_extent_mm = float(margin), float(min_extent_mm)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.min_voxels = int(min_voxels)

    def objects(self, prior: torch.Tensor) -> list[int]:
        """The classes of ``prior`` ``(1, *S)`` that get a crop (present with at least ``min_voxels``), ascending."""
        values, counts = torch.unique(convert_to_tensor(prior, track_meta=False).long(), return_counts=True)
        wanted = [int(v) for v, n in zip(values, counts) if v != 0 and n >= self.min_voxels]
        return [c for c in wanted if self.classes is None or c in self.classes]

    def boxes(self, prior: torch.Tensor, spacing: Sequence[float]) -> list[tuple[int, ObjectBox]]:
        """``(class id, box)`` of every object of ``prior`` ``(1, *S)`` that gets a crop, classes ascending."""
        labels = convert_to_tensor(prior, track_meta=False)[0]
        return [
            (k, object_box(labels == k, self.crop_size, spacing, self.margin, self.min_extent_mm))
            for k in self.objects(prior)
        ]

    def __call__(
        self, image: torch.Tensor, prior: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor, int, ObjectBox]]:
        if tuple(image.shape[1:]) != tuple(prior.shape[1:]) or prior.shape[0] != 1:
            raise ValueError(
                f"image (C, *S) and prior (1, *S) must share their spatial shape, got "
                f"{tuple(image.shape)} and {tuple(prior.shape)}."
            )
        labels = convert_to_tensor(prior, track_meta=False)
        return [
            (crop_to_box(image, box, self.crop_size), crop_mask(labels, k, box, self.crop_size), k, box)
            for k, box in self.boxes(prior, voxel_spacing(image, image.ndim - 1))
        ]


class ObjectCropsd(MapTransform):
    """Dictionary version of :class:`ObjectCrops`: one sample dict per object of ``prior_key``'s label map.

    Each output dict holds, for object ``k``: ``keys`` (images) cropped with linear interpolation; ``mask_key``
    (default: ``prior_key``) the crop of the prior's mask of ``k`` (float 0/1, ``(1, *crop_size)``: the attention
    mask of the paper's organ-centred patch); every key of ``label_keys`` (label maps, e.g. the ground truth) as the
    crop of its own mask of ``k`` (nearest); ``class_id_key`` the int64 ``(1,)`` class ``k`` (the contrastive sample's
    image-wise label); ``object_ids_key`` (if given) int64 ``(1,)`` zero, the object's identity within the sample, as
    ``GenerateAttentionMasksd`` writes it (so two views pair up); ``box_key`` the :class:`ObjectBox` as float64
    ``(2 * dims,)``; every other entry of the input as it was. A prior without objects gives an empty list.

    Args:
        keys: the images to crop (``(C, *S)``; the first one's affine gives the spacing).
        prior_key: the (coarse) label map whose objects are cropped.
        label_keys: label maps cropped to the same object's binary mask.
        mask_key: where the crop of the prior's mask goes (``None``: ``prior_key``).
        class_id_key, box_key: where the object's class and box go.
        object_ids_key: where the object's identity within the sample goes (``None``: not written).
        crop_options: the arguments of :class:`ObjectCrops`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prior_key: str = "prior",
        label_keys: Sequence[str] = (),
        class_id_key: str = "class_ids",
        box_key: str = "object_box",
        mask_key: str | None = None,
        object_ids_key: str | None = None,
        **crop_options: Any,
    ) -> None:
        super().__init__(keys)
        self.cropper = ObjectCrops(**crop_options)
        self.prior_key, self.label_keys = prior_key, tuple(label_keys)
        self.class_id_key, self.box_key = class_id_key, box_key
        self.mask_key, self.object_ids_key = mask_key or prior_key, object_ids_key

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict]:
        d = dict(data)
        first = d[self.keys[0]]
        prior = d[self.prior_key]
        if tuple(first.shape[1:]) != tuple(prior.shape[1:]):
            raise ValueError(
                f"'{self.keys[0]}' {tuple(first.shape)} and '{self.prior_key}' {tuple(prior.shape)} must "
                f"share their spatial shape."
            )
        samples = []
        for class_id, box in self.cropper.boxes(prior, voxel_spacing(first, first.ndim - 1)):
            sample = dict(d)
            for key in self.keys:
                sample[key] = crop_to_box(d[key], box, self.cropper.crop_size)
            for key, source in ((self.mask_key, self.prior_key), *((k, k) for k in self.label_keys)):
                sample[key] = crop_mask(d[source], class_id, box, self.cropper.crop_size)
            sample[self.class_id_key] = torch.tensor([class_id], dtype=torch.int64)
            if self.object_ids_key is not None:
                sample[self.object_ids_key] = torch.zeros(1, dtype=torch.int64)
            sample[self.box_key] = box.as_tensor()
            samples.append(sample)
        return samples
