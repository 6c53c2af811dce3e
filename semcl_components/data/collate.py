"""Batch samples that carry a variable number of objects (attention masks) each.

Every item of a contrastive batch holds ``K`` objects, and ``K`` varies from item to item (organs present in a crop,
objects dropped by a view's augmentation). Per-object keys therefore cannot be stacked: they are kept as lists of
tensors, while images and other fixed-shape entries are collated by MONAI as usual.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.data.utils import list_data_collate

__all__ = ["DEFAULT_OBJECT_KEYS", "SAMPLE_INDEX_KEY", "object_list_collate", "ObjectListCollate"]

DEFAULT_OBJECT_KEYS = ("masks", "class_ids", "object_ids")
"""Per-object keys written by ``GenerateAttentionMasksd``: masks ``(K, *spatial)``, class and object ids ``(K,)``."""

SAMPLE_INDEX_KEY = "sample_index"
"""Key of the ``(B,)`` index of the source sample of each batch item."""


def _flatten(batch: Sequence[Any]) -> tuple[list[Mapping[Hashable, Any]], list[int]]:
    """Flatten items and lists of items (views) in order; return them with the index of their source sample."""
    items: list[Mapping[Hashable, Any]] = []
    sample_index: list[int] = []
    for i, sample in enumerate(batch):
        views = sample if isinstance(sample, list) else [sample]
        for view in views:
            if not isinstance(view, Mapping):
                raise ValueError(
                    f"batch items must be dicts or lists of dicts, got {type(view).__name__} in sample {i}."
                )
            items.append(view)
            sample_index.append(i)
    return items, sample_index


def object_list_collate(
    batch: Sequence[Mapping[Hashable, Any] | list[Mapping[Hashable, Any]]],
    object_keys: Sequence[Hashable] = DEFAULT_OBJECT_KEYS,
) -> dict[Hashable, Any]:
    """Collate dict samples whose per-object entries have a variable length ``K``.

    Args:
        batch: a list of dicts, or of lists of dicts (e.g. the views returned by ``RandMultiViewd``); lists are
            flattened in order into consecutive batch items, as ``monai.data.list_data_collate`` does.
        object_keys: keys kept as python lists (one entry per batch item) of tensors: ``masks`` ``(K_b, *spatial)``,
            ``class_ids`` and ``object_ids`` ``(K_b,)``. Numpy arrays are converted to tensors; keys absent from
            the items are ignored.

    Returns:
        A dict with every other key collated by ``monai.data.utils.list_data_collate`` (images ``(B, C, *spatial)``,
        MetaTensor meta data kept), the object keys as lists of length ``B``, and ``"sample_index"``: int64 ``(B,)``
        index in ``batch`` of the sample each item came from (views of one sample share it). An object instance is
        identified across views by ``(sample_index, object_id)``.
    """
    if len(batch) == 0:
        raise ValueError("batch must not be empty.")
    items, sample_index = _flatten(batch)
    if any(SAMPLE_INDEX_KEY in item for item in items):
        raise ValueError(f"batch items must not contain the reserved key '{SAMPLE_INDEX_KEY}'.")
    object_keys = tuple(object_keys)
    present = [k for k in object_keys if k in items[0]]
    rest = [{k: v for k, v in item.items() if k not in object_keys} for item in items]
    collated: dict[Hashable, Any] = dict(list_data_collate(rest)) if rest[0] else {}
    for key in present:
        missing = [i for i, item in enumerate(items) if key not in item]
        if missing:
            raise ValueError(f"object key '{key}' is missing from batch items {missing}.")
        collated[key] = [torch.as_tensor(item[key]) for item in items]
    collated[SAMPLE_INDEX_KEY] = torch.as_tensor(sample_index, dtype=torch.long)
    return collated


class ObjectListCollate:
    """Picklable ``collate_fn`` calling :func:`object_list_collate`, e.g. from a bundle config::

        "collate_fn": {"_target_": "semcl_components.data.collate.ObjectListCollate"}
    """

    def __init__(self, object_keys: Sequence[Hashable] = DEFAULT_OBJECT_KEYS) -> None:
        self.object_keys = tuple(object_keys)

    def __call__(self, batch: Sequence[Any]) -> dict[Hashable, Any]:
        return object_list_collate(batch, object_keys=self.object_keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(object_keys={self.object_keys})"
