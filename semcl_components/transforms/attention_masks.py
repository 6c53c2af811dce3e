"""Semantic attention masks: one mask per foreground object of a label patch, and dropping those a view lost.

The method (Lee et al., arXiv 2106.01596) turns one training patch into several contrastive samples, one per
foreground object, each highlighted by an attention mask ``a_k`` and labelled by its class ``k``.
:class:`GenerateAttentionMasks` builds those masks from a label map (exact, or deliberately coarse: dilated, blurred,
bounding box; or one whole-view mask for the image-level baseline); :class:`DropEmptyMasks` drops the objects a
view's crop or affine moved out of sight.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.networks.layers import GaussianFilter
from monai.transforms import MapTransform, Randomizable, Transform
from monai.transforms.utils import generate_spatial_bounding_box
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = ["MASK_MODES", "DropEmptyMasks", "DropEmptyMasksd", "GenerateAttentionMasks", "GenerateAttentionMasksd"]

#: Supported ``mask_mode`` values of :class:`GenerateAttentionMasks`.
MASK_MODES = ("exact", "dilate", "blur", "bbox", "whole")

_MAX_VALUES_IN_MESSAGE = 10


def _format_values(values: Sequence[Any]) -> str:
    """Short printable list of offending values for error messages."""
    shown = list(values)[:_MAX_VALUES_IN_MESSAGE]
    more = len(values) - len(shown)
    return f"{shown}" + (f" (and {more} more)" if more > 0 else "")


def _as_label_tensor(label: NdarrayOrTensor) -> torch.Tensor:
    """Validate a ``(1, *spatial)`` integer-valued label map and return it as a plain int64 tensor (same device)."""
    label_t = convert_to_tensor(label, track_meta=False)
    if label_t.ndim not in (3, 4) or label_t.shape[0] != 1:
        raise ValueError(
            f"label must have shape (1, H, W) or (1, H, W, D) (one channel, 2D or 3D), got {tuple(label_t.shape)}."
        )
    if label_t.is_complex():
        raise ValueError(f"label must be real and integer-valued, got dtype {label_t.dtype}.")
    if label_t.is_floating_point():
        non_integer = label_t[label_t != torch.round(label_t)]  # NaN != NaN, so NaN is caught too
        if non_integer.numel() > 0:
            bad = torch.unique(non_integer).tolist()
            raise ValueError(f"label values must be integers, got non-integer values {_format_values(bad)}.")
    return label_t.long()


def _ball_kernel(spatial_dims: int, radius: int, device: torch.device) -> torch.Tensor:
    """Euclidean ball structuring element, shape ``(1, 1, 2r+1, ...)`` (``spatial_dims`` times), values 0/1."""
    axis = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    grids = torch.meshgrid(*([axis] * spatial_dims), indexing="ij")
    squared_distance = sum(g**2 for g in grids)
    return (squared_distance <= radius**2).float()[None, None]


def _dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of ``(K, *spatial)`` 0/1 masks by a Euclidean ball of ``radius`` voxels."""
    if radius == 0:
        return masks
    spatial_dims = masks.ndim - 1
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    hits = conv(masks[:, None], _ball_kernel(spatial_dims, radius, masks.device), padding=radius)
    return (hits[:, 0] > 0.5).float()


def _blur(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed ``(K, *spatial)`` masks (zero padding), each rescaled so that its maximum is 1."""
    spatial_dims = masks.ndim - 1
    blurred = GaussianFilter(spatial_dims, sigma)(masks[None])[0]  # channels (K) are filtered independently
    peak = blurred.flatten(1).amax(dim=1).clamp_min(torch.finfo(blurred.dtype).tiny)
    return (blurred / peak.view(-1, *([1] * spatial_dims))).clamp(0.0, 1.0)


def _bounding_boxes(masks: torch.Tensor, margin: int) -> torch.Tensor:
    """Filled boxes around each of the ``(K, *spatial)`` non-empty masks, grown by ``margin`` and clipped."""
    boxes = torch.zeros_like(masks)
    for k, mask in enumerate(masks):
        start, end = generate_spatial_bounding_box(mask[None], margin=margin, allow_smaller=True)
        boxes[(k, *(slice(lo, hi) for lo, hi in zip(start, end)))] = 1.0
    return boxes


class GenerateAttentionMasks(Randomizable, Transform):
    """Build one attention mask per foreground class present in a label patch.

    For each class ``k`` with at least ``min_voxels`` voxels in ``label``, the attention mask ``a_k`` is:

    - ``"exact"``: ``label == k``;
    - ``"dilate"``: ``label == k`` dilated by a Euclidean ball of ``dilate_radius`` voxels;
    - ``"blur"``: ``label == k`` smoothed by a Gaussian of ``blur_sigma`` voxels (zero padding), rescaled so its
      maximum is 1 (values in ``[0, 1]``);
    - ``"bbox"``: the axis-aligned box around the object grown by ``bbox_margin`` voxels, clipped to the image;
    - ``"whole"``: one mask of ones over the whole patch, class id 0, whatever the label holds: the image-level
      sample of the SimCLR baseline (contrasted with instance positives).

    Coarse modes exist because users pretrain from cheap or predicted masks rather than exact labels. The class id
    ``k`` is the object's image-wise label for the supervised contrastive loss.

    Args:
        classes: the foreground class ids (non-zero integers). Background is 0; any other label value raises
            ``ValueError``. ``None``: every non-zero value present in the label is a class.
        min_voxels: a class present with fewer voxels yields no mask (a crop that only grazes an organ).
        mask_mode: one of :data:`MASK_MODES`.
        dilate_radius: ball radius in voxels for ``"dilate"`` (0 = no dilation).
        blur_sigma: Gaussian sigma in voxels for ``"blur"``.
        bbox_margin: margin in voxels added on each side of the box for ``"bbox"``.
        max_objects: keep at most this many objects, a random subset drawn with ``self.R`` (kept in ascending class
            order). ``None``: keep all.

    Returns from ``__call__(label)`` with ``label`` of shape ``(1, *spatial)`` (2D or 3D):
        ``masks`` float32 ``(K, *spatial)`` and ``class_ids`` int64 ``(K,)``, classes ascending. A patch without
        foreground gives ``K = 0`` (shapes ``(0, *spatial)`` and ``(0,)``). Output types follow the input: numpy in,
        numpy out; tensor in, tensor out (same device); for a ``MetaTensor`` label, ``masks`` is a ``MetaTensor``
        carrying the label's meta data (affine) and ``class_ids`` a plain tensor.

    Example::

        label = torch.zeros(1, 16, 16, 16); label[0, 2:6, 2:6, 2:6] = 1; label[0, 9:14, 9:14, 9:14] = 3
        masks, class_ids = GenerateAttentionMasks(mask_mode="bbox", bbox_margin=1)(label)
        # masks.shape == (2, 16, 16, 16), class_ids == tensor([1, 3])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        classes: Sequence[int] | None = None,
        min_voxels: int = 1,
        mask_mode: str = "exact",
        dilate_radius: int = 2,
        blur_sigma: float = 2.0,
        bbox_margin: int = 2,
        max_objects: int | None = None,
    ) -> None:
        self.classes = self._validated_classes(classes)
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}.")
        if int(min_voxels) != min_voxels or min_voxels < 1:
            raise ValueError(f"min_voxels must be an integer >= 1, got {min_voxels!r}.")
        if int(dilate_radius) != dilate_radius or dilate_radius < 0:
            raise ValueError(f"dilate_radius must be an integer >= 0, got {dilate_radius!r}.")
        if not blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}.")
        if int(bbox_margin) != bbox_margin or bbox_margin < 0:
            raise ValueError(f"bbox_margin must be an integer >= 0, got {bbox_margin!r}.")
        if max_objects is not None and (int(max_objects) != max_objects or max_objects < 1):
            raise ValueError(f"max_objects must be None or an integer >= 1, got {max_objects!r}.")
        self.min_voxels = int(min_voxels)
        self.mask_mode = mask_mode
        self.dilate_radius = int(dilate_radius)
        self.blur_sigma = float(blur_sigma)
        self.bbox_margin = int(bbox_margin)
        self.max_objects = None if max_objects is None else int(max_objects)
        self._keep: np.ndarray | None = None

    @staticmethod
    def _validated_classes(classes: Sequence[int] | None) -> tuple[int, ...] | None:
        if classes is None:
            return None
        values = list(classes)
        non_integer = [c for c in values if isinstance(c, bool) or int(c) != c]
        if non_integer:
            raise ValueError(f"classes must be integers, got {_format_values(non_integer)}.")
        values = [int(c) for c in values]
        if 0 in values:
            raise ValueError(f"classes must not contain 0 (background), got {values}.")
        if len(set(values)) != len(values):
            raise ValueError(f"classes must be distinct, got {values}.")
        return tuple(sorted(values))

    def randomize(self, data: int) -> None:
        """Draw which of the ``data`` present objects to keep (all of them unless ``data > max_objects``)."""
        if self.max_objects is None or data <= self.max_objects:
            self._keep = None
            return
        self._keep = np.sort(self.R.choice(data, size=self.max_objects, replace=False))

    def _present_classes(self, label: torch.Tensor) -> torch.Tensor:
        """int64 ``(K,)``: foreground classes present with >= ``min_voxels`` voxels, ascending."""
        values, counts = torch.unique(label, return_counts=True)  # sorted ascending
        foreground = values != 0
        if self.classes is not None:
            allowed = torch.as_tensor(self.classes, device=values.device)
            unknown = foreground & ~torch.isin(values, allowed)
            if unknown.any():
                raise ValueError(
                    f"label contains values {_format_values(values[unknown].tolist())} that are neither background "
                    f"(0) nor one of classes={list(self.classes)}."
                )
        return values[foreground & (counts >= self.min_voxels)]

    def _masks(self, label: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """float32 ``(K, *spatial)`` masks of the requested mode from a ``(1, *spatial)`` label, one per class id."""
        exact = (label == class_ids.view(-1, *([1] * (label.ndim - 1)))).float()  # (1, *S) vs (K, 1, ..) -> (K, *S)
        if class_ids.numel() == 0 or self.mask_mode == "exact":
            return exact
        if self.mask_mode == "dilate":
            return _dilate(exact, self.dilate_radius)
        if self.mask_mode == "blur":
            return _blur(exact, self.blur_sigma)
        return _bounding_boxes(exact, self.bbox_margin)

    def __call__(self, label: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:  # type: ignore[override]
        """
        Args:
            label: ``(1, H, W)`` or ``(1, H, W, D)`` integer-valued label map (numpy, tensor or MetaTensor).

        Returns:
            ``(masks, class_ids)``: float32 ``(K, *spatial)`` and int64 ``(K,)``.
        """
        label_t = _as_label_tensor(label)
        if self.mask_mode == "whole":
            class_ids = torch.zeros(1, dtype=torch.long, device=label_t.device)
            masks = torch.ones_like(label_t, dtype=torch.float32)
        else:
            class_ids = self._present_classes(label_t)
            self.randomize(int(class_ids.numel()))
            if self._keep is not None:
                class_ids = class_ids[torch.as_tensor(self._keep, device=class_ids.device)]
            masks = self._masks(label_t, class_ids)
        masks_out, *_ = convert_to_dst_type(masks, label, dtype=torch.float32)
        if isinstance(label, np.ndarray):
            return masks_out, class_ids.cpu().numpy().astype(np.int64)
        return masks_out, class_ids


class GenerateAttentionMasksd(MapTransform, Randomizable):
    """Dictionary-based wrapper of :class:`GenerateAttentionMasks`.

    Reads the label map at ``keys`` (one key) and writes:

    - ``masks_key``: float32 ``(K, *spatial)`` attention masks;
    - ``class_ids_key``: int64 ``(K,)`` class of each object (the contrastive label);
    - ``object_ids_key``: int64 ``(K,)`` ``arange(K)``, the identity of each object inside the sample. It travels
      with the masks through :class:`DropEmptyMasksd`, so two views of one sample can be paired object by object.

    If ``image_key`` is given and present, the image's spatial shape must equal the label's.
    ``set_random_state`` propagates to the wrapped array transform (used when ``max_objects`` subsamples).

    Args:
        keys: the label map's key (one key).
        masks_key, class_ids_key, object_ids_key: where the outputs go.
        image_key: the image whose spatial shape is checked against the label's (``None``: no check).
        allow_missing_keys: skip a sample without the label key.
        mask_options: the arguments of :class:`GenerateAttentionMasks` (``classes``, ``min_voxels``, ``mask_mode``,
            ``dilate_radius``, ``blur_sigma``, ``bbox_margin``, ``max_objects``).
    """

    backend = GenerateAttentionMasks.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        masks_key: str = "masks",
        class_ids_key: str = "class_ids",
        object_ids_key: str = "object_ids",
        image_key: str | None = "image",
        allow_missing_keys: bool = False,
        **mask_options: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"GenerateAttentionMasksd reads exactly one label key, got keys={self.keys}.")
        self.masks_key = masks_key
        self.class_ids_key = class_ids_key
        self.object_ids_key = object_ids_key
        self.image_key = image_key
        self.mask_generator = GenerateAttentionMasks(**mask_options)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> GenerateAttentionMasksd:
        super().set_random_state(seed, state)
        self.mask_generator.set_random_state(seed, state)
        return self

    def randomize(self, data: int) -> None:
        self.mask_generator.randomize(data)

    def _check_image_shape(self, d: Mapping[Hashable, Any], label: NdarrayOrTensor) -> None:
        if self.image_key is None or self.image_key not in d:
            return
        image_spatial, label_spatial = tuple(d[self.image_key].shape[1:]), tuple(label.shape[1:])
        if image_spatial != label_spatial:
            raise ValueError(
                f"image '{self.image_key}' spatial shape {image_spatial} differs from label spatial shape "
                f"{label_spatial}."
            )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self._check_image_shape(d, d[key])
            masks, class_ids = self.mask_generator(d[key])
            d[self.masks_key] = masks
            d[self.class_ids_key] = class_ids
            d[self.object_ids_key], *_ = convert_to_dst_type(np.arange(len(class_ids)), class_ids)
        return d


class DropEmptyMasks(Transform):
    """Drop attention masks that are (almost) empty, and the per-object entries aligned with them.

    After a view's random crop or affine, an object may have left the field of view. A mask whose sum (its soft
    volume in voxels) is below ``min_voxels`` is dropped, and every aligned per-object array (class ids, object
    ids) is filtered identically.

    ``__call__(masks, *aligned)``: ``masks`` of shape ``(K, *spatial)``, each aligned array of shape ``(K, ...)``;
    returns the tuple ``(masks[keep], *(a[keep] for a in aligned))`` with the input types preserved.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, min_voxels: float = 1.0) -> None:
        if not min_voxels >= 0:
            raise ValueError(f"min_voxels must be >= 0, got {min_voxels!r}.")
        self.min_voxels = float(min_voxels)

    def __call__(self, masks: NdarrayOrTensor, *aligned: NdarrayOrTensor) -> tuple[NdarrayOrTensor, ...]:
        if masks.ndim < 2:
            raise ValueError(f"masks must have shape (K, *spatial), got {tuple(masks.shape)}.")
        num_objects = masks.shape[0]
        for a in aligned:
            if a.ndim < 1 or a.shape[0] != num_objects:
                raise ValueError(
                    f"aligned arrays must have {num_objects} entries (masks shape {tuple(masks.shape)}), "
                    f"got shape {tuple(a.shape)}."
                )
        volume = convert_to_tensor(masks, track_meta=False).flatten(1).sum(dim=1)
        keep = torch.nonzero(volume >= self.min_voxels)[:, 0].cpu()
        return tuple(self._select(x, keep) for x in (masks, *aligned))

    @staticmethod
    def _select(x: NdarrayOrTensor, keep: torch.Tensor) -> NdarrayOrTensor:
        if isinstance(x, np.ndarray):
            return x[keep.numpy()]
        return x[keep.to(x.device)]


class DropEmptyMasksd(MapTransform):
    """Dictionary-based wrapper of :class:`DropEmptyMasks`.

    Filters ``data[masks_key]`` (``(K, *spatial)``) and every ``data[k]`` for ``k`` in ``aligned_keys``
    (``(K, ...)``) with the same keep-index. With ``allow_missing_keys``, absent keys are skipped (a sample
    without ``masks_key`` is returned unchanged).
    """

    backend = DropEmptyMasks.backend

    def __init__(
        self,
        masks_key: str = "masks",
        aligned_keys: Sequence[str] = ("class_ids", "object_ids"),
        min_voxels: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        aligned_keys = (aligned_keys,) if isinstance(aligned_keys, str) else tuple(aligned_keys)
        super().__init__([masks_key, *aligned_keys], allow_missing_keys)
        self.masks_key = masks_key
        self.aligned_keys = aligned_keys
        self.dropper = DropEmptyMasks(min_voxels=min_voxels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = list(self.key_iterator(d))  # raises KeyError for a missing key unless allow_missing_keys
        if self.masks_key not in present:
            return d
        aligned = [k for k in present if k != self.masks_key]
        filtered = self.dropper(d[self.masks_key], *(d[k] for k in aligned))
        for key, value in zip([self.masks_key, *aligned], filtered):
            d[key] = value
        return d
