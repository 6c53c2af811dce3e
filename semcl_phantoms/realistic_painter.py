"""The painter of a ``realistic`` phantom: tissues blended by partial-volume occupancy into an HU image, labels set.

:class:`Painter` holds one subject's image and label map while its parts are drawn (:mod:`.realistic_body`, the gut
and organs in :mod:`.realistic_phantom`): ``structure`` places a template of :mod:`.realistic_anatomy` for the subject
(habitus, shifts, rotation, deformation, lobulation) as a signed distance in mm, ``organ`` paints one, ``lumen`` fills a
hollow organ's contents. :func:`smooth_field` gives the correlated random fields the painter and generator share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .implicit_shapes import Grid, Region, ellipsoid_distance, half_space_distance, rotation_matrix, smooth_union
from .realistic_anatomy import Blob, Structure
from .realistic_preset import RealisticPreset
from .realistic_subject import RealisticSubject

__all__ = ["Painter", "smooth_field"]


def smooth_field(rng: np.random.Generator, grid: Grid, spacing_mm: float) -> np.ndarray:
    """Random float32 field of the grid's shape with unit sd and a correlation length of about ``spacing_mm``."""
    cells = [int(np.ceil(n * s / spacing_mm)) + 2 for n, s in zip(grid.size, grid.spacing)]
    low = rng.standard_normal(cells).astype(np.float32)
    zoom = [n / (c - 1) for n, c in zip(grid.size, cells)]
    field = ndimage.zoom(low, zoom, order=1, mode="nearest", grid_mode=False)[tuple(slice(0, n) for n in grid.size)]
    return (field - field.mean()) / max(float(field.std()), 1e-6)


class Painter:
    """Paints tissues by partial-volume occupancy onto an HU image and organ ids onto a label map."""

    def __init__(self, grid: Grid, preset: RealisticPreset, subject: RealisticSubject, rng: np.random.Generator):
        self.grid, self.preset, self.subject, self.rng = grid, preset, subject, rng
        self.image = np.full(grid.size, subject.hu["air"], dtype=np.float32)
        self.label = np.zeros(grid.size, dtype=np.uint8)
        self.lobulation = smooth_field(rng, grid, preset.lobulation_spacing_mm)
        self.texture = [smooth_field(rng, grid, preset.texture_spacing_mm) for _ in range(2)]
        self.cavity = np.ones(grid.size, dtype=np.float32)
        self.lung = np.zeros(grid.size, dtype=np.float32)

    def paint(
        self, region: Region, occupancy: np.ndarray, tissue: str, label: int | None, extra_hu=0.0, texture=0
    ) -> None:
        """Blend ``tissue``'s HU (plus texture and ``extra_hu``) into ``region``; set ``label`` where occupancy >= 0.5."""
        amplitude = self.preset.tissues[tissue].texture_hu
        hu = self.subject.hu[tissue] + amplitude * self.texture[texture][region] + extra_hu
        view = self.image[region]
        view += (hu - view) * occupancy
        if label is not None:
            self.label[region][occupancy >= 0.5] = label

    def world(self, point: Sequence[float]) -> np.ndarray:
        """An anatomical-frame point (mm from L1's centre) -> world mm, spread by the subject's habitus."""
        return self.subject.l1 + self.subject.habitus_scale * np.asarray(point, dtype=np.float32)

    def structure(self, s: Structure, volume_scale: float | None = None) -> tuple[Region, np.ndarray] | None:
        """Region and signed distance (mm) of one structure placed, scaled, rotated and deformed for this subject."""
        rng, sub = self.rng, self.subject
        scale = volume_scale if volume_scale is not None else self._volume_scale(s.volume_cv)
        shift = sub.group_shift[s.group] + rng.normal(0.0, self.preset.organ_shift_sd_mm).astype(np.float32)
        if s.group == "spine":
            shift = np.zeros(3, dtype=np.float32)
        if s.breathes:
            shift = shift + np.array([0.0, 0.0, sub.diaphragm], dtype=np.float32)
        rotation = (
            rotation_matrix(rng.normal(0.0, s.rotation_sd_deg, 3)) if s.rotation_sd_deg else np.eye(3, dtype=np.float32)
        )
        centre = self.world(s.centre) + shift
        spread = scale * sub.habitus_scale

        def place(q: Sequence[float]) -> np.ndarray:
            return centre + rotation @ (spread * np.asarray(q, dtype=np.float32))

        boxes = []
        for part in s.parts:
            if isinstance(part, Blob):
                reach = max(part.semi_axes) * scale * float(sub.habitus_scale.max())
                boxes.append((place(part.centre) - reach, place(part.centre) + reach))
            else:
                points = np.stack([place(q) for q in part.points])
                reach = max(part.radii) * scale
                boxes.append((points.min(0) - reach, points.max(0) + reach))
        pad = s.blend_mm + 2.0 * s.lobulation_mm
        region = self.grid.region(np.min([b[0] for b in boxes], 0) - pad, np.max([b[1] for b in boxes], 0) + pad)
        if region is None:
            return None
        coords = self.grid.coords(region)
        distance = None
        for part in s.parts:
            if isinstance(part, Blob):
                semi = np.asarray(part.semi_axes, dtype=np.float32) * spread
                d = ellipsoid_distance(coords, place(part.centre), semi, rotation)
                if part.subtract:
                    distance = np.maximum(distance, -d) if distance is not None else None
                    continue
            else:
                points = np.stack([place(q) for q in part.points])
                d = self.grid.tube(region, points, np.asarray(part.radii, dtype=np.float32) * scale)
            distance = d if distance is None else smooth_union(distance, d, s.blend_mm)
        if s.cut is not None:
            point, normal = s.cut
            distance = np.maximum(distance, half_space_distance(coords, place(point), rotation @ np.asarray(normal)))
        if s.lobulation_mm:
            distance = distance + s.lobulation_mm * self.lobulation[region]
        return region, distance

    def _volume_scale(self, cv: float) -> float:
        """Linear scale of a template whose volume is log-normal with mean 1 and coefficient of variation ``cv``."""
        if cv <= 0:
            return 1.0
        sigma = np.sqrt(np.log1p(cv * cv))
        return float(np.exp(self.rng.normal(-0.5 * sigma * sigma, sigma)) ** (1.0 / 3.0))

    def organ(self, s: Structure, constraint: np.ndarray | None) -> tuple[Region, np.ndarray, np.ndarray] | None:
        """Paint one structure with its tissue and label; returns (region, distance, occupancy) or None if unseen."""
        placed = self.structure(s)
        if placed is None:
            return None
        region, distance = placed
        occupancy = self.grid.occupancy(distance)
        if constraint is not None:
            occupancy = occupancy * constraint[region]
        self.paint(region, occupancy, s.tissue, s.label)
        return region, distance, occupancy

    def lumen(
        self,
        region: Region,
        distance: np.ndarray,
        wall_mm: float,
        gas_fraction: float,
        label: int | None,
        contents: str = "gut_fluid",
    ) -> None:
        """Fill a hollow organ's lumen (``wall_mm`` inside its surface): gas rises anteriorly (supine), fluid below."""
        occupancy = self.grid.occupancy(distance + wall_mm)
        inside = occupancy >= 0.5
        if not inside.any():
            return
        self.paint(region, occupancy, contents, label, texture=1)
        if gas_fraction > 0:
            y = self.grid.coords(region)[1]
            level = float(np.quantile(y[inside], 1.0 - gas_fraction))
            gas = occupancy * np.clip(0.5 + (y - level) / self.grid.voxel_mm, 0.0, 1.0)
            self.paint(region, gas, "air", label)
