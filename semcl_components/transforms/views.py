"""Views: independently augmented copies of one sample, in which image and attention masks move together."""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable
from monai.utils import MAX_SEED

__all__ = ["RandMultiViewd"]


def _copy_sample(data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """Shallow copy of a sample whose tensors/arrays are deep-copied (views must not share mutable buffers)."""
    return {k: copy.deepcopy(v) if isinstance(v, (torch.Tensor, np.ndarray)) else v for k, v in data.items()}


class RandMultiViewd(Randomizable, MapTransform):
    """Make ``num_views`` independently augmented views of one sample.

    Each view is ``transform`` applied to its own copy of the input (shallow-copied dict, deep-copied tensors),
    tagged with ``view_key = v`` (``v = 0 .. num_views - 1``). The call returns a list of dicts; MONAI's
    ``Compose`` applies later transforms to each item, and ``list_data_collate`` / :func:`object_list_collate`
    flatten the list into consecutive batch items.

    Reproducibility: before each view the wrapped transform is seeded from ``self.R`` (when it is
    ``Randomizable``, e.g. a ``Compose``), so ``set_random_state`` (and the seeding that ``monai.data.DataLoader``
    does from ``set_determinism``) reproduces the views. A non-randomizable callable is applied as is.

    Intended composition: spatial random transforms take ``keys=["image", "masks"]`` so that, within a view, image
    and attention masks receive identical parameters (masks are float maps: use ``mode="bilinear"`` for both);
    intensity transforms take ``keys=["image"]`` only, so they never touch the masks::

        from monai.transforms import Compose, RandAffined, RandFlipd, RandGaussianNoised, RandScaleIntensityd
        from monai.transforms import RandSpatialCropd

        view = Compose([
            RandSpatialCropd(keys=["image", "masks"], roi_size=(32, 32, 32), random_size=False),
            RandAffined(keys=["image", "masks"], prob=1.0, rotate_range=0.3, scale_range=0.1,
                        mode=("bilinear", "bilinear"), padding_mode="zeros"),
            RandFlipd(keys=["image", "masks"], prob=0.5, spatial_axis=0),
            RandScaleIntensityd(keys=["image"], factors=0.1, prob=1.0),
            RandGaussianNoised(keys=["image"], prob=1.0, std=0.05),
            DropEmptyMasksd(),
        ])
        views = RandMultiViewd(view, num_views=2).set_random_state(seed=0)(sample)  # [view0, view1]

    Args:
        transform: callable applied to each view, typically a ``monai.transforms.Compose`` of dict transforms. It
            returns a dict, or a list of dicts (e.g. a cropper with ``num_samples``), all tagged with the view.
        num_views: number of views (>= 1).
        view_key: key under which the view index is stored.
    """

    def __init__(self, transform: Callable, num_views: int = 2, view_key: str = "view_id") -> None:
        MapTransform.__init__(self, keys=view_key)  # the only key this transform writes
        if not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}.")
        if int(num_views) != num_views or num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1, got {num_views!r}.")
        self.transform = transform
        self.num_views = int(num_views)
        self.view_key = view_key
        self._seeds: np.ndarray = np.zeros(self.num_views, dtype=np.int64)

    def randomize(self, data: Any = None) -> None:
        """Draw one seed per view for the wrapped transform."""
        self._seeds = self.R.randint(MAX_SEED, size=self.num_views, dtype=np.int64)

    def _one_view(self, data: Mapping[Hashable, Any], view: int) -> list[dict[Hashable, Any]]:
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=int(self._seeds[view]))
        out = self.transform(_copy_sample(data))
        items = out if isinstance(out, list) else [out]
        for item in items:
            if not isinstance(item, Mapping):
                raise ValueError(f"transform must return a dict or a list of dicts, got {type(item).__name__}.")
            item[self.view_key] = view
        return items

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:  # type: ignore[override]
        self.randomize()
        return [item for view in range(self.num_views) for item in self._one_view(data, view)]
