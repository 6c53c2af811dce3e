"""The ``simple`` phantom preset: the project's first generator, kept unchanged so earlier results stay reproducible.

Ellipsoid organs at near-fixed positions in normalised coordinates (the anatomy fills whatever field of view the writer
gives it, so its physical scale is set only by the writer's ``spacing``), three discrete contrast phases, a gallbladder
absent in about a quarter of subjects. Each subject varies in body size, organ position, size, orientation and shape (a
smooth random deformation field), draws a contrast phase and per-organ intensity offsets, and carries partial-volume
blending, smooth texture, blur and noise. The ``realistic`` preset (:mod:`.realistic_phantom`) replaces it for studies
that need patient-like variation; see ``docs/PHANTOMS.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .anatomy import CONTRAST_PHASES, ORGANS, TISSUE_HU, Organ
from .phantom_subject import HU_MAX, HU_MIN, PhantomSubject

__all__ = ["generate_simple_phantom"]


class _Canvas:
    """Accumulates tissue intensities with partial-volume blending on a deformed normalised grid."""

    def __init__(self, size: Sequence[int], rng: np.random.Generator):
        self.size = tuple(int(s) for s in size)
        self.rng = rng
        axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in self.size]
        base = np.meshgrid(*axes, indexing="ij")
        displacement = [self.smooth_field(cells=4, amplitude=0.035) for _ in range(3)]
        self.coords = [b + d for b, d in zip(base, displacement)]
        # one voxel in normalised units, per axis: used to turn implicit distances into partial-volume fractions
        self.voxel = np.array([2.0 / max(n - 1, 1) for n in self.size], dtype=np.float32)
        self.image = np.full(self.size, TISSUE_HU["air"][0], dtype=np.float32)
        self.label = np.zeros(self.size, dtype=np.uint8)
        self.texture = [self.smooth_field(cells=max(n // 6 for n in self.size), amplitude=1.0) for _ in range(2)]

    def smooth_field(self, cells: int, amplitude: float) -> np.ndarray:
        """Random field with about ``cells`` independent values per axis, linearly upsampled, std ~ ``amplitude``."""
        low = self.rng.standard_normal((cells + 1,) * 3).astype(np.float32) * amplitude
        zoom = [n / (cells + 1) for n in self.size]
        return ndimage.zoom(low, zoom, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in self.size)]

    def paint(self, occupancy: np.ndarray, region: tuple[slice, ...], hu: np.ndarray | float, label: int = 0) -> None:
        """Blend ``hu`` into the image by the partial-volume ``occupancy`` (in [0, 1]) of ``region``."""
        view = self.image[region]
        view += (hu - view) * occupancy
        if label:
            self.label[region][occupancy >= 0.5] = label

    def occupancy(self, signed_distance: np.ndarray) -> np.ndarray:
        """Partial-volume fraction from a signed distance in voxels (negative inside)."""
        return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _rotation(rng: np.random.Generator, tilt_deg: float, jitter_deg: tuple[float, float, float]) -> np.ndarray:
    """3x3 rotation: the organ's tilt about z plus a random jitter about x, y and z (degrees, std)."""
    ax, ay, az = np.deg2rad(rng.normal(0.0, jitter_deg)) + np.deg2rad([0.0, 0.0, tilt_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def _bounding_region(canvas: _Canvas, centre: np.ndarray, radius: float) -> tuple[slice, ...] | None:
    """Voxel slices covering a cube of half-width ``radius`` (normalised units, plus deformation slack) around centre."""
    region = []
    for axis, n in enumerate(canvas.size):
        lo = int(np.floor((centre[axis] - radius - 0.15 + 1.0) / canvas.voxel[axis]))
        hi = int(np.ceil((centre[axis] + radius + 0.15 + 1.0) / canvas.voxel[axis])) + 1
        lo, hi = max(lo, 0), min(hi, n)
        if lo >= hi:
            return None
        region.append(slice(lo, hi))
    return tuple(region)


def _ellipsoid_distance(
    canvas: _Canvas,
    region: tuple[slice, ...],
    centre: np.ndarray,
    semi_axes: np.ndarray,
    rotation: np.ndarray,
    tube: bool,
) -> np.ndarray:
    """Approximate signed distance (voxels, negative inside) to a rotated ellipsoid (or a z-infinite elliptic tube)."""
    local = [c[region] - centre[i] for i, c in enumerate(canvas.coords)]
    # rotate the offsets into the organ's frame: u_j = sum_i R_ij p_i
    frame = [sum(rotation[i, j] * local[i] for i in range(3)) for j in range(3)]
    axes = 2 if tube else 3
    radius = np.sqrt(sum((frame[j] / semi_axes[j]) ** 2 for j in range(axes)))
    scale = float(np.min(semi_axes[:axes]) / np.mean(canvas.voxel))
    return (radius - 1.0) * scale


def _paint_body(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Body outline, subcutaneous fat, abdominal wall, visceral fat with bowel, spine and paraspinal muscles.

    Returns the boolean mask of the peritoneal cavity, where organs may be drawn.
    """
    everything = tuple(slice(0, n) for n in canvas.size)
    identity = np.eye(3, dtype=np.float32)
    body_axes = np.array([0.90, 0.70, 1.0], dtype=np.float32) * rng.uniform(0.88, 1.04, 3).astype(np.float32)
    fat = rng.uniform(0.04, 0.12)
    layers = (("subcutaneous_fat", 0.0), ("muscle", fat), ("visceral_fat", fat + 0.045))
    centre = np.array([0.0, 0.0, 0.0], dtype=np.float32)
    cavity = None
    for tissue, inset in layers:
        distance = _ellipsoid_distance(canvas, everything, centre, body_axes - inset, identity, tube=True)
        mean, texture = TISSUE_HU[tissue]
        canvas.paint(canvas.occupancy(distance), everything, mean + texture * canvas.texture[0])
        cavity = distance < 0
    bowel = np.clip(canvas.smooth_field(cells=6, amplitude=1.0), 0.0, None)
    mean, texture = TISSUE_HU["bowel"]
    canvas.paint(np.clip(bowel * 1.5, 0.0, 1.0) * cavity, everything, mean + texture * canvas.texture[1])
    spine_y = -body_axes[1] + 0.33
    for tissue, centre_xy, axes_xy in (
        ("muscle", (0.17, spine_y - 0.1), (0.12, 0.09)),
        ("muscle", (-0.17, spine_y - 0.1), (0.12, 0.09)),
        ("bone_cortex", (0.0, spine_y), (0.13, 0.11)),
        ("bone_marrow", (0.0, spine_y), (0.10, 0.085)),
        ("spinal_canal", (0.0, spine_y - 0.17), (0.045, 0.04)),
    ):
        part_centre = np.array([centre_xy[0], centre_xy[1], 0.0], dtype=np.float32)
        region = _bounding_region(canvas, part_centre, max(axes_xy))
        if region is None:
            continue
        region = region[:2] + (slice(0, canvas.size[2]),)
        semi = np.array([axes_xy[0], axes_xy[1], 1.0], dtype=np.float32)
        distance = _ellipsoid_distance(canvas, region, part_centre, semi, identity, tube=True)
        mean, texture = TISSUE_HU[tissue]
        canvas.paint(canvas.occupancy(distance), region, mean + texture * canvas.texture[1][region])
    return cavity


def _organ_hu(organ: Organ, phase: int, rng: np.random.Generator) -> float:
    """The subject's mean HU of an organ: the phase's value plus a per-subject offset (contrast timing, habitus)."""
    return float(organ.hu[phase] + rng.normal(0.0, 12.0))


def _paint_organ(
    canvas: _Canvas, organ: Organ, phase: int, scale: float, cavity: np.ndarray, rng: np.random.Generator
) -> bool:
    """Draw one organ with per-subject position, size, orientation and intensity; False if it fell outside the view."""
    centre = np.array(organ.centre, dtype=np.float32) + rng.normal(0.0, 0.03, 3).astype(np.float32)
    if organ.tube:
        centre[2] = 0.0
    semi_axes = np.array(organ.semi_axes, dtype=np.float32) * scale * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    jitter = (0.0, 0.0, 4.0) if organ.tube else (6.0, 6.0, 10.0)
    rotation = _rotation(rng, organ.tilt_deg, jitter)
    reach = float(np.max(semi_axes[:2] if organ.tube else semi_axes))
    region = _bounding_region(canvas, centre, reach)
    if region is None:
        return False
    if organ.tube:
        region = region[:2] + (slice(0, canvas.size[2]),)
    distance = _ellipsoid_distance(canvas, region, centre, semi_axes, rotation, organ.tube)
    occupancy = canvas.occupancy(distance) * cavity[region]
    if not np.any(occupancy >= 0.5):
        return False
    texture = canvas.texture[organ.label % 2][region] * organ.texture_hu
    canvas.paint(occupancy, region, _organ_hu(organ, phase, rng) + texture, label=organ.label)
    return True


def generate_simple_phantom(size: Sequence[int] = (96, 96, 96), seed: int | Sequence[int] = 0) -> PhantomSubject:
    """Generate one ``simple`` subject.

    Args:
        size: (X, Y, Z) voxels. The anatomy fills the field of view whatever the size.
        seed: an int or a sequence of ints (e.g. ``(dataset_seed, subject_index)``) seeding numpy's PCG64.

    Returns:
        a :class:`PhantomSubject` with an int16 HU image and a uint8 label map, both of shape ``size``.
    """
    if len(size) != 3 or min(size) < 8:
        raise ValueError(f"size must be three integers >= 8, got {tuple(size)}.")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    canvas = _Canvas(size, rng)
    cavity = _paint_body(canvas, rng)
    phase = int(rng.integers(len(CONTRAST_PHASES)))
    scale = float(rng.uniform(0.9, 1.1))
    present = []
    for organ in ORGANS:
        has_organ = rng.random() < organ.presence
        if has_organ and _paint_organ(canvas, organ, phase, scale, cavity, rng):
            present.append(organ.name)
    # the scanner: point spread (blur) then quantum noise
    image = ndimage.gaussian_filter(canvas.image, sigma=0.6, mode="nearest")
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(8.0, 20.0))
    image = np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)
    return PhantomSubject(image=image, label=canvas.label, phase=CONTRAST_PHASES[phase], present=present)
