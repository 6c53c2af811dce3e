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

#: Per-object keys written by ``GenerateAttentionMasksd``: masks ``(K, *spatial)``, class and object ids ``(K,)``.
DEFAULT_OBJECT_KEYS = ("masks", "class_ids", "object_ids")

#: Key of the ``(B,)`` index of the source sample of each batch item.
SAMPLE_INDEX_KEY = "sample_index"


def _view_groups(batch: Sequence[Any], where: str = "batch") -> list[list[Mapping[Hashable, Any]]]:
    """Split a (nested) batch into groups of views: a dict is a group of one, a list of dicts is one sample's views,
    and a list of lists (e.g. ``num_samples`` crops of a volume, each with its views) holds several samples."""
    groups: list[list[Mapping[Hashable, Any]]] = []
    for i, sample in enumerate(batch):
        if isinstance(sample, Mapping):
            groups.append([sample])
        elif isinstance(sample, (list, tuple)) and sample and all(isinstance(v, Mapping) for v in sample):
            groups.append(list(sample))
        elif isinstance(sample, (list, tuple)) and sample:
            groups.extend(_view_groups(sample, where=f"{where}[{i}]"))
        else:
            raise ValueError(
                f"batch items must be dicts or (nested) lists of dicts, got {type(sample).__name__} at {where}[{i}]."
            )
    return groups


def _flatten(batch: Sequence[Any]) -> tuple[list[Mapping[Hashable, Any]], list[int]]:
    """Flatten items and lists of items (views) in order; return them with the index of their source sample."""
    items: list[Mapping[Hashable, Any]] = []
    sample_index: list[int] = []
    for i, views in enumerate(_view_groups(batch)):
        items.extend(views)
        sample_index.extend([i] * len(views))
    return items, sample_index


def object_list_collate(
    batch: Sequence[Mapping[Hashable, Any] | list[Mapping[Hashable, Any]]],
    object_keys: Sequence[Hashable] = DEFAULT_OBJECT_KEYS,
) -> dict[Hashable, Any]:
    """Collate dict samples whose per-object entries have a variable length ``K``.

    Args:
        batch: a list of dicts, or of lists of dicts (e.g. the views returned by ``RandMultiViewd``), or of lists of
            such lists (e.g. ``num_samples`` crops of one volume, each with its views); lists are flattened in order
            into consecutive batch items, as ``monai.data.list_data_collate`` does. An innermost list of dicts is
            the views of one sample.
        object_keys: keys kept as python lists (one entry per batch item) of tensors: ``masks`` ``(K_b, *spatial)``,
            ``class_ids`` and ``object_ids`` ``(K_b,)``. Numpy arrays are converted to tensors; keys absent from
            the items are ignored.

    Returns:
        A dict with every other key collated by ``monai.data.utils.list_data_collate`` (images ``(B, C, *spatial)``,
        MetaTensor meta data kept), the object keys as lists of length ``B``, and ``"sample_index"``: int64 ``(B,)``
        index of the sample each item came from (views of one sample share it). An object instance is
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

    "collate_fn": {"_target_": "semcl_components.collate.ObjectListCollate"}
    """

    def __init__(self, object_keys: Sequence[Hashable] = DEFAULT_OBJECT_KEYS) -> None:
        self.object_keys = tuple(object_keys)

    def __call__(self, batch: Sequence[Any]) -> dict[Hashable, Any]:
        return object_list_collate(batch, object_keys=self.object_keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(object_keys={self.object_keys})"
