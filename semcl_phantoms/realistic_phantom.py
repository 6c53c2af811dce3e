"""The ``realistic`` phantom preset: abdominal CT subjects that vary like patients, at a physical scale.

Each subject draws a body habitus (width, depth, subcutaneous fat), the level and centring of the scan, a diaphragm
level that moves the upper abdominal organs together, grouped displacements (liver-gallbladder-right kidney-duodenum;
spleen-stomach-left kidney; pancreas along the splenic vein), per-organ volume, position and rotation, a smooth
deformation of the whole anatomy and lobulated organ surfaces; a continuous contrast time after injection (or none)
with an enhancement curve per tissue, per-organ intensity variation, gut contents (gas and fluid in the stomach,
bowel loops with gas, sometimes positive oral contrast) and a scanner's correlated noise. Distractors that a network
must learn to reject (IVC, portal, splenic and renal veins, mesenteric arteries, adrenals, duodenum, colon, small
bowel, vertebrae and ribs, lungs, heart) are drawn but labelled background. All parameters: :mod:`.realistic_anatomy`;
values and sources: ``docs/PHANTOMS.md``.

The field of view is the preset's (``fov_mm``, an upper abdomen of 360 x 360 x 270 mm), so the voxel spacing is
``fov_mm / size``: ``size`` (64, 64, 48) gives 5.6 mm isotropic voxels, (96, 96, 96) gives 3.75 x 3.75 x 2.8 mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .anatomy import LABEL_NAMES
from .implicit_shapes import Grid
from .phantom_subject import HU_MAX, HU_MIN, PhantomSubject
from .realistic_body import paint_body, paint_bones
from .realistic_painter import Painter, smooth_field
from .realistic_preset import REALISTIC, RealisticPreset
from .realistic_subject import RealisticSubject

__all__ = ["generate_realistic_phantom"]


def _paint_gut(painter: Painter, rng: np.random.Generator) -> None:
    """Small bowel loops (gas pockets, fluid, enhancing walls) in the lower cavity, then the duodenum and colon."""
    p, grid = painter.preset, painter.grid
    low = painter.world((0.0, -40.0, -250.0))
    high = painter.world((0.0, 200.0, -25.0))
    region = grid.region((-400.0, low[1], low[2]), (400.0, high[1], high[2]))
    if region is not None:
        # loops: where two smooth random fields are both near zero (the intersection of two thin sheets is a tube)
        fields = [smooth_field(rng, grid, 45.0)[region] for _ in range(2)]
        tube = np.sqrt(fields[0] ** 2 + fields[1] ** 2)
        width = p.small_bowel_loop_width
        wall = np.clip((width - tube) / (0.5 * width), 0.0, 1.0) * painter.cavity[region]
        painter.paint(region, wall, "gut_wall", 0)
        inner = np.clip((0.6 * width - tube) / (0.4 * width), 0.0, 1.0) * painter.cavity[region]
        painter.paint(region, inner, "gut_fluid", 0, texture=1)
        gas = inner * (smooth_field(rng, grid, 30.0)[region] > 1.0) * (rng.random() < p.bowel_gas_probability * 2)
        painter.paint(region, gas.astype(np.float32), "air", 0)
    for s in p.bowel:
        painted = painter.organ(s, painter.cavity)
        if painted is not None:
            gas = (
                rng.uniform(*p.colon_gas_fraction)
                if s.name == "colon"
                else rng.uniform(0.0, 0.3) * (rng.random() < p.bowel_gas_probability)
            )
            painter.lumen(
                painted[0], painted[1], p.bowel_wall_mm, gas, 0, "stool" if s.name == "colon" else "gut_fluid"
            )


def _paint_organs(painter: Painter, rng: np.random.Generator) -> None:
    """The eight labelled organs, with the kidneys' medulla, the spleen's arterial heterogeneity, the stomach's contents."""
    p = painter.preset
    below_diaphragm = painter.cavity * (1.0 - painter.lung)
    for s in p.organs:
        painted = painter.organ(s, below_diaphragm)
        if painted is None:
            continue
        region, distance, occupancy = painted
        if s.name.endswith("kidney"):  # medulla: inside an ~8 mm cortex, lobulated like pyramids
            medulla = painter.grid.occupancy(distance + 8.0 + 4.0 * painter.texture[1][region]) * occupancy
            painter.paint(region, medulla, "kidney_medulla", None)
        elif s.name == "spleen" and painter.subject.spleen_heterogeneity:
            extra = painter.subject.spleen_heterogeneity * painter.texture[1][region]
            painter.paint(region, occupancy, "spleen", None, extra_hu=extra)
        elif s.name == "stomach":
            label = None if p.stomach_label_includes_contents else 0
            painter.lumen(region, distance, p.stomach_wall_mm, rng.uniform(*p.stomach_gas_fraction), label)


def _check_size(size: Sequence[int]) -> tuple[int, int, int]:
    if len(size) != 3 or min(size) < 8:
        raise ValueError(f"size must be three integers >= 8, got {tuple(size)}.")
    return tuple(int(n) for n in size)  # type: ignore[return-value]


def generate_realistic_phantom(
    size: Sequence[int] = (64, 64, 48), seed: int | Sequence[int] = 0, preset: RealisticPreset = REALISTIC
) -> PhantomSubject:
    """Generate one ``realistic`` subject.

    Args:
        size: (X, Y, Z) voxels over the preset's field of view; the spacing is ``preset.fov_mm / size`` (a smaller
            Z than X and Y gives thicker slices).
        seed: an int or a sequence of ints (e.g. ``(dataset_seed, subject_index)``) seeding numpy's PCG64.
        preset: all anatomical, contrast and scanner parameters.

    Returns:
        a :class:`PhantomSubject`: int16 HU image and uint8 label map of shape ``size``, the phase bucket, the contrast
        time in seconds (None: native) and the spacing in mm.
    """
    size = _check_size(size)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    spacing = tuple(float(f) / n for f, n in zip(preset.fov_mm, size))
    subject = RealisticSubject(preset, rng)
    warp = Grid(size, spacing)
    displacement = np.stack([smooth_field(rng, warp, preset.warp_spacing_mm) * preset.warp_sd_mm for _ in range(3)])
    grid = Grid(size, spacing, displacement)
    painter = Painter(grid, preset, subject, rng)
    paint_body(painter)
    _paint_gut(painter, rng)
    _paint_organs(painter, rng)
    for s in preset.vessels:
        painter.organ(s, None)
    paint_bones(painter)
    # the scanner: point spread, then quantum noise correlated over about a voxel
    image = ndimage.gaussian_filter(painter.image, sigma=preset.blur_voxels, mode="nearest")
    noise = ndimage.gaussian_filter(rng.standard_normal(size, dtype=np.float32), sigma=preset.noise_correlation_voxels)
    averaging = np.sqrt(np.prod(preset.noise_reference_voxel_mm) / np.prod(spacing))
    image += noise * np.float32(subject.noise_sd * averaging / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)
    present = [LABEL_NAMES[int(k)] for k in np.unique(painter.label) if k > 0]
    return PhantomSubject(
        image=image,
        label=painter.label,
        phase=subject.phase,
        present=present,
        contrast_time_s=subject.time_s,
        spacing_mm=spacing,
    )
