"""Left-right flips that keep the anatomical convention: a flipped right kidney becomes a left kidney.

A flip along the left-right axis that keeps the labels leaves only context within the patch to tell a kidney's side,
and trains the network against the anatomical convention. :class:`RandLateralFlipd` flips image and label maps (or
attention masks) together and swaps the labels of each left/right pair, in label maps and in vectors of class ids
alike. The pairs are found once from the class names (:func:`lateral_pairs`: "right kidney" and "left kidney"), so a
dataset declares them only by naming its classes.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import Flip, MapTransform, RandomizableTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

__all__ = ["RandLateralFlipd", "SwapLabels", "lateral_pairs"]

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def lateral_pairs(class_names: Sequence[str]) -> list[tuple[int, int]]:
    """Label-id pairs ``(right, left)`` of the foreground classes whose names differ only in "right"/"left".

    Args:
        class_names: foreground class names in label order (label id = position + 1).

    Example::

        >>> lateral_pairs(["spleen", "right kidney", "left kidney", "right adrenal gland", "left adrenal gland"])
        [(2, 3), (4, 5)]
    """
    ids = {name.strip().lower(): index + 1 for index, name in enumerate(class_names)}
    pairs = []
    for name, label in ids.items():
        if _SIDE.search(name) and _SIDE.search(name).group(1) == "right":
            mirrored = _SIDE.sub(lambda m: "left" if m.group(1).lower() == "right" else "right", name)
            if mirrored in ids:
                pairs.append((label, ids[mirrored]))
    return sorted(pairs)


class SwapLabels(Transform):
    """Swap the values of paired labels: every ``a`` becomes ``b`` and every ``b`` becomes ``a``, for each pair.

    Works on a label map ``(1, *spatial)`` and on a vector of class ids ``(K,)`` alike; other values are unchanged and
    the output has the input's type (numpy, tensor or ``MetaTensor`` with its meta data).

    Args:
        pairs: ``(a, b)`` label pairs; no label may appear in two pairs.
    """

    def __init__(self, pairs: Sequence[Sequence[int]]) -> None:
        self.pairs = [(int(a), int(b)) for a, b in pairs]
        values = [v for pair in self.pairs for v in pair]
        if len(set(values)) != len(values) or any(a == b for a, b in self.pairs):
            raise ValueError(f"pairs must be disjoint pairs of two different labels, got {self.pairs}.")

    def __call__(self, labels: NdarrayOrTensor) -> NdarrayOrTensor:
        values = convert_to_tensor(labels, track_meta=False)
        swapped = values.clone()
        for a, b in self.pairs:
            swapped[values == a] = b
            swapped[values == b] = a
        out, *_ = convert_to_dst_type(swapped, labels)
        return out


class RandLateralFlipd(RandomizableTransform, MapTransform):
    """With probability ``prob``, flip ``keys`` along the left-right axis and swap the left/right labels.

    One random decision per call moves all ``keys`` together (image, label map, attention masks); the keys in
    ``label_keys`` (label maps or class-id vectors, flipped or not) then have their paired labels swapped, so that
    after the flip a right kidney's voxels, now on the left, carry the left kidney's label. After
    ``Orientationd(axcodes="RAS")`` the left-right axis is spatial axis 0.

    Args:
        keys: the spatial keys to flip, channel-first ``(C, *spatial)``.
        pairs: label pairs to swap, e.g. ``lateral_pairs(class_names)``; empty: a plain flip.
        label_keys: keys whose values are labels (a label map, or a ``(K,)`` vector of class ids).
        spatial_axis: the left-right axis.
        prob: probability of flipping.
        allow_missing_keys: skip keys absent from the data.
    """

    def __init__(
        self,
        keys: KeysCollection,
        pairs: Sequence[Sequence[int]] = (),
        label_keys: KeysCollection = ("label",),
        spatial_axis: int = 0,
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        self.flipper = Flip(spatial_axis=spatial_axis)
        self.swapper = SwapLabels(pairs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.flipper(d[key])
        for key in self.label_keys:
            if key in d:
                d[key] = self.swapper(d[key])
            elif not self.allow_missing_keys:
                raise KeyError(f"label key '{key}' is not in the data (keys: {sorted(map(str, d))}).")
        return d
