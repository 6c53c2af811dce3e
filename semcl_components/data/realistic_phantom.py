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
from .enhancement import phase_bucket
from .implicit_shapes import Grid, Region, ellipsoid_distance, half_space_distance, rotation_matrix, smooth_union
from .phantom_subject import HU_MAX, HU_MIN, PhantomSubject
from .realistic_anatomy import Blob, Structure
from .realistic_preset import REALISTIC, RealisticPreset

__all__ = ["generate_realistic_phantom"]


def _smooth_field(rng: np.random.Generator, grid: Grid, spacing_mm: float) -> np.ndarray:
    """Random float32 field of the grid's shape with unit sd and a correlation length of about ``spacing_mm``."""
    cells = [int(np.ceil(n * s / spacing_mm)) + 2 for n, s in zip(grid.size, grid.spacing)]
    low = rng.standard_normal(cells).astype(np.float32)
    zoom = [n / (c - 1) for n, c in zip(grid.size, cells)]
    field = ndimage.zoom(low, zoom, order=1, mode="nearest", grid_mode=False)[tuple(slice(0, n) for n in grid.size)]
    return (field - field.mean()) / max(float(field.std()), 1e-6)


class _Subject:
    """One subject's draws: habitus, placement, contrast timing and tissue intensities (see the module docstring)."""

    def __init__(self, preset: RealisticPreset, rng: np.random.Generator):
        p = preset
        habitus = rng.standard_normal()
        rho = p.habitus_correlation

        def correlated(mean_sd: tuple[float, float]) -> float:
            return mean_sd[0] + mean_sd[1] * (rho * habitus + np.sqrt(1.0 - rho * rho) * rng.standard_normal())

        self.width = max(correlated(p.body_width_mm), 200.0)
        self.depth = max(correlated(p.body_depth_mm), 150.0)
        self.fat = max(correlated(p.subcutaneous_fat_mm), 3.0)
        inset = self.fat + p.wall_muscle_mm
        self.cavity = (self.width / 2.0 - inset, self.depth / 2.0 - inset)
        mean_inset = p.subcutaneous_fat_mm[0] + p.wall_muscle_mm
        mean_cavity = (p.body_width_mm[0] / 2.0 - mean_inset, p.body_depth_mm[0] / 2.0 - mean_inset)
        self.pitch = float(rng.normal(*p.vertebra_pitch_mm))
        self.habitus_scale = np.array(
            [
                (self.cavity[0] / mean_cavity[0]) ** p.habitus_coupling,
                (self.cavity[1] / mean_cavity[1]) ** p.habitus_coupling,
                self.pitch / p.vertebra_pitch_mm[0],
            ],
            dtype=np.float32,
        )
        self.l1 = np.asarray(p.l1_position_mm, dtype=np.float32) + rng.normal(0.0, p.centring_sd_mm).astype(np.float32)
        # body centre: the posterior skin lies back_depth + fat behind L1's centre
        self.body_y = -(p.back_depth_mm + self.fat) + self.depth / 2.0
        self.diaphragm = float(rng.normal(0.0, p.diaphragm_sd_mm))
        self.group_shift = {
            g: rng.normal(0.0, p.group_shift_sd_mm).astype(np.float32) for g in ("right", "left", "midline", "bowel")
        }
        self.group_shift["spine"] = np.zeros(3, dtype=np.float32)
        # contrast timing: the protocol's time (recorded) and the body's (circulation varies between subjects)
        if rng.random() < p.native_probability:
            self.time_s = None
        else:
            low, high = np.log(p.contrast_time_range_s)
            self.time_s = round(float(np.exp(rng.uniform(low, high))), 1)
        body_time = None if self.time_s is None else max(self.time_s + rng.normal(0.0, p.circulation_delay_sd_s), 0.0)
        self.phase = phase_bucket(self.time_s, p.arterial_end_s, p.portal_venous_end_s)
        scale = max(rng.normal(1.0, p.enhancement_scale_sd), 0.3)
        self.hu = {}
        for name, tissue in p.tissues.items():
            native = rng.normal(tissue.native_hu, tissue.native_sd_hu)
            gain = scale * max(rng.normal(1.0, p.organ_enhancement_sd), 0.3)
            self.hu[name] = float(native) + (0.0 if tissue.curve is None else gain * tissue.curve(body_time))
        if rng.random() < p.steatosis_probability:  # fatty liver: lower attenuation, same enhancement
            self.hu["liver"] += rng.normal(*p.steatosis_liver_hu) - p.tissues["liver"].native_hu
        if rng.random() < p.oral_contrast_probability:
            self.hu["gut_fluid"] = float(rng.normal(*p.oral_contrast_hu))
        arterial = p.tissues["blood_arterial"].curve
        self.spleen_heterogeneity = p.spleen_arterial_heterogeneity_hu * (
            arterial.bolus(body_time) if arterial else 0.0
        )
        self.noise_sd = float(rng.uniform(*p.noise_sd_hu))


class _Painter:
    """Paints tissues by partial-volume occupancy onto an HU image and organ ids onto a label map."""

    def __init__(self, grid: Grid, preset: RealisticPreset, subject: _Subject, rng: np.random.Generator):
        self.grid, self.preset, self.subject, self.rng = grid, preset, subject, rng
        self.image = np.full(grid.size, subject.hu["air"], dtype=np.float32)
        self.label = np.zeros(grid.size, dtype=np.uint8)
        self.lobulation = _smooth_field(rng, grid, preset.lobulation_spacing_mm)
        self.texture = [_smooth_field(rng, grid, preset.texture_spacing_mm) for _ in range(2)]
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


def _paint_gut(painter: _Painter, rng: np.random.Generator) -> None:
    """Small bowel loops (gas pockets, fluid, enhancing walls) in the lower cavity, then the duodenum and colon."""
    p, grid = painter.preset, painter.grid
    low = painter.world((0.0, -40.0, -250.0))
    high = painter.world((0.0, 200.0, -25.0))
    region = grid.region((-400.0, low[1], low[2]), (400.0, high[1], high[2]))
    if region is not None:
        # loops: where two smooth random fields are both near zero (the intersection of two thin sheets is a tube)
        fields = [_smooth_field(rng, grid, 45.0)[region] for _ in range(2)]
        tube = np.sqrt(fields[0] ** 2 + fields[1] ** 2)
        width = p.small_bowel_loop_width
        wall = np.clip((width - tube) / (0.5 * width), 0.0, 1.0) * painter.cavity[region]
        painter.paint(region, wall, "gut_wall", 0)
        inner = np.clip((0.6 * width - tube) / (0.4 * width), 0.0, 1.0) * painter.cavity[region]
        painter.paint(region, inner, "gut_fluid", 0, texture=1)
        gas = inner * (_smooth_field(rng, grid, 30.0)[region] > 1.0) * (rng.random() < p.bowel_gas_probability * 2)
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


def _paint_organs(painter: _Painter, rng: np.random.Generator) -> None:
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
    from .realistic_body import paint_body, paint_bones

    size = _check_size(size)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    spacing = tuple(float(f) / n for f, n in zip(preset.fov_mm, size))
    subject = _Subject(preset, rng)
    warp = Grid(size, spacing)
    displacement = np.stack([_smooth_field(rng, warp, preset.warp_spacing_mm) * preset.warp_sd_mm for _ in range(3)])
    grid = Grid(size, spacing, displacement)
    painter = _Painter(grid, preset, subject, rng)
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
