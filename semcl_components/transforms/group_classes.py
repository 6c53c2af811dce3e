"""Object classes refined by a per-subject group: organ x contrast phase, the paper's image-wise labels.

The paper labels each object by its organ *and* the contrast phase of its scan (8 organs x 3 phases = 24 classes), so
that the contrastive task keeps phases apart: an organ's objects from arterial scans are positives of each other, and
negatives of the same organ's portal-venous objects. :class:`GroupClassIds` maps organ ids to such joint ids and
:class:`GroupClassIdsd` reads the group (e.g. ``"contrast_phase": "arterial"``) from each sample. Apply it after any
transform that works on organ ids (e.g. :class:`RandLateralFlipd`, whose left/right pairs are organ ids).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform

from ..bundle_runtime.input_checks import source_name

__all__ = ["GroupClassIds", "GroupClassIdsd"]


class GroupClassIds(Transform):
    """Joint class ids of an organ and a group: ``organ + group * num_foreground`` for every organ id > 0.

    With ``num_foreground`` organs (ids ``1..num_foreground``) and ``G`` groups the joint ids run from 1 to
    ``G * num_foreground``; id 0 (background, or a whole-view mask) stays 0.

    Args:
        num_foreground: the number of foreground (organ) classes.

    Example::

        >>> GroupClassIds(num_foreground=8)(torch.tensor([1, 3]), group=2)
        tensor([17, 19])
    """

    def __init__(self, num_foreground: int) -> None:
        if num_foreground < 1:
            raise ValueError(f"num_foreground must be >= 1, got {num_foreground}.")
        self.num_foreground = int(num_foreground)

    def __call__(self, class_ids: NdarrayOrTensor, group: int) -> NdarrayOrTensor:
        """``class_ids``: int ``(K,)`` organ ids in ``0..num_foreground``; returns the joint ids, same type and shape."""
        if group < 0:
            raise ValueError(f"group index must be >= 0, got {group}.")
        if (class_ids > self.num_foreground).any() or (class_ids < 0).any():
            raise ValueError(f"class ids must lie in 0..{self.num_foreground}, got {class_ids.tolist()}.")
        return class_ids + (class_ids > 0) * (group * self.num_foreground)


class GroupClassIdsd(MapTransform):
    """Dictionary twin of :class:`GroupClassIds`: the group is the sample's ``group_key`` value, a name of ``groups``.

    Args:
        keys: the class-id vectors to refine (e.g. ``class_ids``).
        group_key: the sample's entry naming its group (e.g. ``contrast_phase``, from the datalist).
        groups: every group name, in a fixed order (its position is the group index).
        num_foreground: the number of foreground (organ) classes.
        image_key: the entry whose meta data names the file in error messages.
        allow_missing_keys: skip ``keys`` a sample lacks.

    Raises:
        ValueError: a sample has no ``group_key`` entry, or a name not in ``groups`` (the message names the file).
    """

    def __init__(
        self,
        keys: KeysCollection = "class_ids",
        group_key: str = "contrast_phase",
        groups: Sequence[str] = (),
        num_foreground: int = 1,
        image_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not groups or len(set(groups)) != len(groups):
            raise ValueError(f"groups must be distinct names, at least one, got {list(groups)}.")
        self.group_key = group_key
        self.groups = [str(g) for g in groups]
        self.image_key = image_key
        self.joint = GroupClassIds(num_foreground)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        group = d.get(self.group_key)
        if str(group) not in self.groups:
            found = "has none" if group is None else f"has {group!r}"
            raise ValueError(
                f"{source_name(d.get(self.image_key), 'a sample')}: its '{self.group_key}' must be one of {self.groups} "
                f"but it {found}; give every datalist entry one."
            )
        for key in self.key_iterator(d):
            d[key] = self.joint(d[key], self.groups.index(str(group)))
        return d
