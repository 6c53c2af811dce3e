"""Semantic attention-mask generation and two-view pipelines for semantic-aware contrastive learning.

The method (Lee et al., arXiv 2106.01596) turns one training patch into several contrastive samples, one per
foreground object, each highlighted by an attention mask ``a_k`` and labelled by its class ``k``. This package builds
those masks from a label map (exact, or deliberately coarse: dilated, blurred, bounding box), makes two augmented
views of a sample in which image and masks move together, drops objects a view cropped away, and flips left and right
with the paired labels swapped:

- :mod:`.attention_masks`: ``GenerateAttentionMasks(d)``, ``DropEmptyMasks(d)``;
- :mod:`.views`: ``RandMultiViewd``;
- :mod:`.lateral_flip`: ``SwapLabels``, ``RandLateralFlipd``;
- :mod:`.group_classes`: ``GroupClassIds(d)`` (organ x contrast phase class ids);
- :mod:`.object_crops`: ``ObjectCrops(d)`` (one organ-centred crop per object of a coarse label map, the paper's
  organ-centred patches), ``paste_from_box`` (a crop back onto its volume);
- :mod:`.coarse_masks`: ``RandCoarseMask(d)`` (coarse label maps shaped like a first stage's errors), ``CoarseMaskd``
  (one fixed coarse map per case, for validation).

A typical pretraining pipeline (dictionary transforms)::

    from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd, RandSpatialCropd
    from monai.transforms import RandGaussianNoised

    view = Compose([
        RandSpatialCropd(keys=["image", "masks"], roi_size=(48, 48, 48), random_size=False),
        RandLateralFlipd(keys=["image", "masks"], pairs=[(2, 3)], label_keys=["class_ids"]),  # kidneys swap sides
        RandGaussianNoised(keys=["image"], prob=1.0, std=0.05),  # intensity: image only
        DropEmptyMasksd(masks_key="masks", aligned_keys=("class_ids", "object_ids")),
    ])
    pipeline = Compose([
        LoadImaged(keys=["image", "label"]),
        EnsureChannelFirstd(keys=["image", "label"]),
        GenerateAttentionMasksd(keys="label", mask_mode="exact", min_voxels=10),
        RandMultiViewd(view, num_views=2),  # -> list of 2 dicts, flattened by the collate function
    ])

Batch it with :class:`semcl_components.collate.ObjectListCollate` (variable number of objects per item).
"""

from .attention_masks import (
    MASK_MODES,
    DropEmptyMasks,
    DropEmptyMasksd,
    GenerateAttentionMasks,
    GenerateAttentionMasksd,
)
from .coarse_masks import CoarseMaskd, RandCoarseMask, RandCoarseMaskd
from .group_classes import GroupClassIds, GroupClassIdsd
from .lateral_flip import RandLateralFlipd, SwapLabels, lateral_pairs
from .object_crops import (
    CROP_MODES,
    ObjectBox,
    ObjectCrops,
    ObjectCropsd,
    crop_mask,
    crop_to_box,
    object_box,
    paste_from_box,
)
from .views import RandMultiViewd

__all__ = [
    "CROP_MODES",
    "CoarseMaskd",
    "MASK_MODES",
    "DropEmptyMasks",
    "DropEmptyMasksd",
    "GenerateAttentionMasks",
    "GenerateAttentionMasksd",
    "GroupClassIds",
    "GroupClassIdsd",
    "ObjectBox",
    "ObjectCrops",
    "ObjectCropsd",
    "RandCoarseMask",
    "RandCoarseMaskd",
    "RandLateralFlipd",
    "RandMultiViewd",
    "SwapLabels",
    "crop_mask",
    "crop_to_box",
    "lateral_pairs",
    "object_box",
    "paste_from_box",
]
