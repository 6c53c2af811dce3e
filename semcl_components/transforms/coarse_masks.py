"""Coarse masks shaped like a first stage's errors, simulated from an exact label map (for training a refinement).

A coarse-to-fine cascade refines the label map of a first, coarse stage. To train the refinement without running the
first stage on every training volume (or to train it beside one), :class:`RandCoarseMask` degrades each organ of an
exact label map the ways a low-resolution network errs, each drawn at random per organ with ``self.R``:

- **blocky boundaries**: the mask is taken on a grid ``coarsen`` times coarser and brought back (nearest neighbour),
  as a first stage at ``coarsen`` times the spacing would draw it;
- **too big or too small**: dilated or eroded by a ball of up to ``max_radius`` voxels (an erosion that would empty
  the organ is not applied);
- **smooth where the organ is thin**: blurred (Gaussian, ``smooth_sigma`` voxels) and thresholded at 0.5, which
  rounds corners and loses thin parts (a pancreas tail);
- **partly missed**: with probability ``drop_prob``, the part beyond a random plane through the organ is removed (up to
  ``max_drop_fraction`` of its extent along the plane's normal);
- **misplaced**: shifted by up to ``max_shift`` voxels per axis;
- **missed altogether**: with probability ``missing_prob`` the organ is left out.

The organs are then painted back into one label map in a random order (where two coarse masks overlap, the one
painted last wins, as a first stage's argmax picks one). Only the organ's bounding region is processed, so the cost
grows with the organs, not the volume. :class:`CoarseMaskd` draws one fixed coarse map per case (for validation).
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

from .attention_masks import _blur, _dilate

__all__ = ["CoarseMaskd", "RandCoarseMask", "RandCoarseMaskd"]


def _coarsen(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``(*S)`` 0/1 mask seen on a grid ``factor`` times coarser (block majority), brought back to ``S`` (nearest)."""
    if factor <= 1:
        return mask
    dims = mask.ndim
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    coarse = pool(mask[None, None], factor, ceil_mode=True) >= 0.5
    fine = coarse.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    if dims == 3:
        fine = fine.repeat_interleave(factor, 4)
    return fine[(0, 0, *(slice(0, s) for s in mask.shape))].float()


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return 1.0 - _dilate((1.0 - mask)[None], radius)[0]


class RandCoarseMask(Randomizable, Transform):
    """Simulate a first stage's coarse label map from an exact one (see the module docstring).

    Args:
        classes: the organ ids to degrade (``None``: every non-zero value present); others are copied as they are.
        coarsen: the first stage's grid, as a multiple of this one's (1: no blockiness).
        max_radius: dilation or erosion radius, drawn from ``-max_radius..max_radius`` voxels (negative: erode).
        smooth_sigma: Gaussian sigma in voxels before thresholding at 0.5 (0: no smoothing).
        drop_prob: probability of cutting away part of an organ beyond a random plane.
        max_drop_fraction: the most of an organ's extent (along the plane's normal) a cut removes.
        max_shift: the largest shift per axis, in voxels.
        missing_prob: probability an organ is left out altogether.

    ``__call__(label)`` takes ``(1, *S)`` integer labels (2D or 3D) and returns the coarse map of the same shape and
    type (numpy or tensor; a ``MetaTensor`` keeps its meta data).
    """

    def __init__(
        self,
        classes: Sequence[int] | None = None,
        coarsen: int = 2,
        max_radius: int = 2,
        smooth_sigma: float = 1.0,
        drop_prob: float = 0.3,
        max_drop_fraction: float = 0.3,
        max_shift: int = 2,
        missing_prob: float = 0.0,
    ) -> None:
        for name, value in (("coarsen", coarsen), ("max_radius", max_radius), ("max_shift", max_shift)):
            if int(value) != value or value < (1 if name == "coarsen" else 0):
                raise ValueError(f"{name} must be an integer >= {1 if name == 'coarsen' else 0}, got {value!r}.")
        for name, value in (
            ("drop_prob", drop_prob),
            ("max_drop_fraction", max_drop_fraction),
            ("missing_prob", missing_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        if smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma!r}.")
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.coarsen, self.max_radius, self.max_shift = int(coarsen), int(max_radius), int(max_shift)
        self.smooth_sigma, self.drop_prob = float(smooth_sigma), float(drop_prob)
        self.max_drop_fraction, self.missing_prob = float(max_drop_fraction), float(missing_prob)
        self._draws: dict[int, dict] = {}
        self._order: list[int] = []

    def randomize(self, data: Sequence[int]) -> None:
        """Draw every degradation of each organ in ``data`` and the order they are painted in."""
        self._draws = {}
        for k in data:
            normal = self.R.normal(size=3)
            self._draws[k] = {
                "missing": self.R.uniform() < self.missing_prob,
                "radius": int(self.R.randint(-self.max_radius, self.max_radius + 1)),
                "drop": self.R.uniform() < self.drop_prob,
                "normal": normal / max(float(np.linalg.norm(normal)), 1e-12),
                "drop_fraction": self.R.uniform(0.0, self.max_drop_fraction),
                "shift": self.R.randint(-self.max_shift, self.max_shift + 1, size=3),
            }
        self._order = [int(k) for k in self.R.permutation(list(data))] if len(data) else []

    def _degrade(self, mask: torch.Tensor, draw: dict) -> torch.Tensor:
        """One organ's ``(*S)`` 0/1 mask, degraded as drawn (empty if the organ is missed)."""
        if draw["missing"]:
            return torch.zeros_like(mask)
        dims = mask.ndim
        pad = self.max_radius + self.max_shift + self.coarsen + int(np.ceil(3 * self.smooth_sigma)) + 1
        found = torch.nonzero(mask)
        low = [max(0, int(v) - pad) for v in found.amin(0)]
        high = [min(s, int(v) + pad + 1) for v, s in zip(found.amax(0), mask.shape)]
        region = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        part = _coarsen(mask[region], self.coarsen)
        radius = draw["radius"]
        if radius > 0:
            part = _dilate(part[None], radius)[0]
        elif radius < 0:
            eroded = _erode(part, -radius)
            part = eroded if eroded.any() else part
        if self.smooth_sigma > 0:
            part = (_blur(part[None], self.smooth_sigma)[0] >= 0.5).float() if part.any() else part
        if draw["drop"] and part.any():
            coords = torch.nonzero(part).double()
            along = coords @ torch.as_tensor(draw["normal"][:dims], dtype=torch.float64)
            cut = along.max() - draw["drop_fraction"] * (along.max() - along.min())
            removed = coords[along > cut].long()
            part[tuple(removed.T)] = 0.0
        out = torch.zeros_like(mask)
        out[region] = part
        shift = [int(s) for s in draw["shift"][:dims]]
        return torch.roll(out, shifts=shift, dims=list(range(dims))) if any(shift) else out

    def __call__(self, label: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        labels = convert_to_tensor(label, track_meta=False)
        if labels.ndim not in (3, 4) or labels.shape[0] != 1:
            raise ValueError(f"label must be (1, H, W) or (1, H, W, D), got shape {tuple(labels.shape)}.")
        labels = labels[0].long()
        present = [int(v) for v in torch.unique(labels) if v != 0]
        organs = [k for k in present if self.classes is None or k in self.classes]
        if randomize:
            self.randomize(organs)
        coarse = torch.where(torch.isin(labels, torch.tensor(organs, dtype=labels.dtype)), 0, labels)
        for k in self._order:
            if k in organs:
                coarse[self._degrade((labels == k).float(), self._draws[k]) > 0.5] = k
        return convert_to_dst_type(coarse[None], label, dtype=label.dtype)[0]


class RandCoarseMaskd(MapTransform, Randomizable):
    """Dictionary version of :class:`RandCoarseMask`: the coarse map of ``keys`` (one label map) goes to
    ``prior_key`` (the input is kept). ``coarse_options`` are :class:`RandCoarseMask`'s arguments."""

    def __init__(self, keys: KeysCollection = "label", prior_key: str = "prior", **coarse_options: Any) -> None:
        MapTransform.__init__(self, keys)
        if len(self.keys) != 1:
            raise ValueError(f"RandCoarseMaskd reads exactly one label key, got keys={self.keys}.")
        self.prior_key = prior_key
        self.simulator = RandCoarseMask(**coarse_options)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandCoarseMaskd:
        super().set_random_state(seed, state)
        self.simulator.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        pass  # the wrapped transform draws per organ when called

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        d[self.prior_key] = self.simulator(d[self.keys[0]])
        return d


class CoarseMaskd(MapTransform):
    """A fixed coarse map per case (for validation, and the cascade's oracle priors): :class:`RandCoarseMask` drawn
    from a random state seeded by ``seed`` and the label's file name without its folder (or, without one, its
    content), so each case gets the same prior in every epoch and run, wherever its dataset lies, and
    ``CacheDataset`` may cache it (it is not a random transform).

    Args:
        keys: the label map (one key); its coarse map goes to ``prior_key``.
        prior_key: where the coarse map goes.
        seed: the base seed.
        coarse_options: :class:`RandCoarseMask`'s arguments.
    """

    def __init__(
        self, keys: KeysCollection = "label", prior_key: str = "prior", seed: int = 0, **coarse_options: Any
    ) -> None:
        MapTransform.__init__(self, keys)
        if len(self.keys) != 1:
            raise ValueError(f"CoarseMaskd reads exactly one label key, got keys={self.keys}.")
        self.prior_key, self.seed = prior_key, int(seed)
        self.simulator = RandCoarseMask(**coarse_options)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        label = d[self.keys[0]]
        source = getattr(label, "meta", {}).get("filename_or_obj")
        key = (
            Path(str(source)).name.encode() if source else convert_to_tensor(label, track_meta=False).numpy().tobytes()
        )
        self.simulator.set_random_state(state=np.random.RandomState((self.seed + zlib.crc32(key)) % 2**32))
        d[self.prior_key] = self.simulator(label)
        return d
