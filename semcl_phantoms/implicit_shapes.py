"""Signed distances in millimetres on a voxel grid: the shapes the ``realistic`` phantom is built from.

Every shape is an implicit surface: a float32 array of approximate signed distances (mm, negative inside) over a
bounding region of the grid. Ellipsoids (Quilez's first-order distance estimate), tubes along polylines with a radius
per vertex (round cones), their smooth union (polynomial smooth minimum) and half-space cuts build lobulated organ
templates; :meth:`Grid.occupancy` turns a distance into the partial-volume fraction of each voxel. The grid's
coordinates carry a smooth displacement field, so every shape drawn on it is deformed the same smooth way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Grid", "ellipsoid_distance", "half_space_distance", "rotation_matrix", "smooth_union"]

Region = tuple[slice, slice, slice]


def rotation_matrix(degrees: Sequence[float]) -> np.ndarray:
    """3x3 float32 rotation ``Rz @ Ry @ Rx`` from angles (degrees) about the x, y and z axes; columns = rotated axes."""
    ax, ay, az = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


class Grid:
    """World coordinates (mm, RAS+, the volume's centre at the origin) of an (X, Y, Z) voxel grid.

    Args:
        size: (X, Y, Z) voxels.
        spacing: (x, y, z) voxel spacing in mm.
        displacement: optional (3, X, Y, Z) float32 field in mm added to the coordinates (a smooth deformation).
    """

    def __init__(self, size: Sequence[int], spacing: Sequence[float], displacement: np.ndarray | None = None):
        self.size = tuple(int(n) for n in size)
        self.spacing = np.asarray(spacing, dtype=np.float32)
        self.axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * s) for n, s in zip(self.size, self.spacing)]
        self.displacement = displacement
        # the width over which a surface blends into its surroundings (partial volume)
        self.voxel_mm = float(np.prod(self.spacing) ** (1.0 / 3.0))
        self.margin_mm = 0.0 if displacement is None else float(np.abs(displacement).max())
        self.everything: Region = tuple(slice(0, n) for n in self.size)  # type: ignore[assignment]

    def region(self, low: Sequence[float], high: Sequence[float]) -> Region | None:
        """Voxel slices covering the world box [low, high] (mm) plus the deformation's reach; None if outside."""
        slices = []
        for axis, (lo, hi) in enumerate(zip(low, high)):
            coords = self.axes[axis]
            lo_mm, hi_mm = lo - self.margin_mm - self.voxel_mm, hi + self.margin_mm + self.voxel_mm
            start, stop = int(np.searchsorted(coords, lo_mm)), int(np.searchsorted(coords, hi_mm, side="right"))
            if start >= stop:
                return None
            slices.append(slice(start, stop))
        return tuple(slices)  # type: ignore[return-value]

    def coords(self, region: Region) -> list[np.ndarray]:
        """The deformed world coordinates (three float32 arrays of the region's shape, mm) of ``region``."""
        shape = tuple(s.stop - s.start for s in region)
        out = []
        for axis in range(3):
            line = self.axes[axis][region[axis]]
            view = [1, 1, 1]
            view[axis] = -1
            base = np.broadcast_to(line.reshape(view), shape)
            out.append(base + self.displacement[(axis, *region)] if self.displacement is not None else base.copy())
        return out

    def occupancy(self, distance: np.ndarray) -> np.ndarray:
        """Partial-volume fraction in [0, 1] of each voxel from a signed distance in mm (negative inside)."""
        return np.clip(0.5 - distance / self.voxel_mm, 0.0, 1.0)

    def tube(self, region: Region, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """Signed distance over ``region`` to a tube along ``points`` (N, 3) mm with ``radii`` (N,) mm per vertex.

        Each segment is a round cone; the tube is their union. Segments are evaluated only in their own bounding
        box, so long thin tubes (vessels, ribs, bowel) cost little.
        """
        points = np.asarray(points, dtype=np.float32)
        radii = np.asarray(radii, dtype=np.float32)
        shape = tuple(s.stop - s.start for s in region)
        distance = np.full(shape, np.inf, dtype=np.float32)
        for i in range(len(points) - 1):
            a, b, ra, rb = points[i], points[i + 1], radii[i], radii[i + 1]
            reach = max(ra, rb) + 2.0 * self.voxel_mm
            box = self.region(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
            if box is None:
                continue
            box = tuple(slice(max(s.start, r.start), min(s.stop, r.stop)) for s, r in zip(box, region))
            if any(s.start >= s.stop for s in box):
                continue
            p = self.coords(box)  # type: ignore[arg-type]
            ab = b - a
            length2 = max(float(ab @ ab), 1e-6)
            t = np.clip(sum((p[k] - a[k]) * ab[k] for k in range(3)) / length2, 0.0, 1.0)
            gap = np.sqrt(sum((p[k] - a[k] - t * ab[k]) ** 2 for k in range(3)))
            local = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(box, region))
            np.minimum(distance[local], gap - (ra + t * (rb - ra)), out=distance[local])
        return distance


def ellipsoid_distance(
    coords: Sequence[np.ndarray], centre: Sequence[float], semi_axes: Sequence[float], rotation: np.ndarray
) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid with ``semi_axes`` (mm) along ``rotation``'s columns.

    Uses ``k0 * (k0 - 1) / k1`` with ``k0 = |u / a|`` and ``k1 = |u / a^2|`` (u: the offset in the ellipsoid's frame),
    exact on the surface and a good estimate near it, which is all partial volume and smooth unions need.
    """
    offset = [c - float(o) for c, o in zip(coords, centre)]
    local = [sum(float(rotation[i, j]) * offset[i] for i in range(3)) for j in range(3)]
    a = [float(s) for s in semi_axes]
    k0 = np.sqrt(sum((local[j] / a[j]) ** 2 for j in range(3)))
    k1 = np.sqrt(sum((local[j] / (a[j] * a[j])) ** 2 for j in range(3)))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def half_space_distance(coords: Sequence[np.ndarray], point: Sequence[float], normal: Sequence[float]) -> np.ndarray:
    """Signed distance (mm) to the plane through ``point`` with outward ``normal``: negative on the inner side."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    return sum(float(n[k]) * (coords[k] - float(point[k])) for k in range(3))


def smooth_union(a: np.ndarray, b: np.ndarray, blend_mm: float) -> np.ndarray:
    """Union of two shapes with a fillet of about ``blend_mm`` where they meet (polynomial smooth minimum)."""
    if blend_mm <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / blend_mm, 0.0, 1.0)
    return b + (a - b) * h - blend_mm * h * (1.0 - h)
