"""Every parameter of the ``realistic`` phantom preset, in one frozen dataclass: tune numbers here, never code.

Tissue attenuation and enhancement (HU, seconds), population spreads of habitus, organ volumes and positions (mm, %),
gut contents and the scanner's noise; the template anatomy they vary is :mod:`.realistic_anatomy`. Values, sources and
the judgement calls behind them: ``docs/PHANTOMS.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .enhancement import EnhancementCurve
from .realistic_anatomy import BOWEL, ORGANS, VESSELS, Structure, Vec

__all__ = ["REALISTIC", "RealisticPreset", "Tissue", "TISSUES"]


@dataclass(frozen=True)
class Tissue:
    """Attenuation of one tissue.

    Attributes:
        native_hu: population mean of the unenhanced value (HU).
        native_sd_hu: its standard deviation between subjects (HU).
        texture_hu: amplitude of smooth texture within the tissue (HU).
        curve: enhancement after contrast injection; None: the tissue does not enhance.
    """

    native_hu: float
    native_sd_hu: float = 0.0
    texture_hu: float = 0.0
    curve: EnhancementCurve | None = None


_CURVES = {
    "arterial": EnhancementCurve(12.0, 28.0, 260.0, 110.0, shape=3.0, equilibrium_tau_s=30.0),
    "portal": EnhancementCurve(18.0, 45.0, 150.0, 110.0, shape=2.5, equilibrium_tau_s=35.0),
    "systemic_venous": EnhancementCurve(30.0, 75.0, 60.0, 110.0, shape=2.0, equilibrium_tau_s=40.0),
    "liver": EnhancementCurve(18.0, 65.0, 30.0, 45.0, shape=2.0, equilibrium_tau_s=40.0),
    "spleen": EnhancementCurve(14.0, 40.0, 55.0, 55.0),
    "kidney_cortex": EnhancementCurve(13.0, 30.0, 150.0, 140.0, shape=3.0, equilibrium_tau_s=30.0),
    "kidney_medulla": EnhancementCurve(25.0, 90.0, 60.0, 140.0, shape=2.0, equilibrium_tau_s=60.0),
    "pancreas": EnhancementCurve(14.0, 38.0, 75.0, 45.0),
    "gut_wall": EnhancementCurve(14.0, 40.0, 40.0, 35.0),
    "muscle": EnhancementCurve(18.0, 60.0, 5.0, 15.0, shape=2.0, equilibrium_tau_s=40.0),
}

TISSUES: dict[str, Tissue] = {
    "air": Tissue(-1000.0),
    "lung": Tissue(-850.0, 30.0, 25.0),
    "subcutaneous_fat": Tissue(-100.0, 8.0, 8.0),
    "visceral_fat": Tissue(-95.0, 8.0, 12.0),
    "muscle": Tissue(50.0, 6.0, 6.0, _CURVES["muscle"]),
    "bone_cortex": Tissue(650.0, 100.0, 60.0),
    "bone_marrow": Tissue(200.0, 50.0, 40.0),
    "disc": Tissue(85.0, 10.0, 8.0),
    "spinal_canal": Tissue(20.0, 5.0, 4.0),
    "blood_arterial": Tissue(42.0, 5.0, 4.0, _CURVES["arterial"]),
    "blood_portal": Tissue(42.0, 5.0, 4.0, _CURVES["portal"]),
    "blood_venous": Tissue(42.0, 5.0, 4.0, _CURVES["systemic_venous"]),
    "liver": Tissue(58.0, 6.0, 6.0, _CURVES["liver"]),
    "spleen": Tissue(48.0, 4.0, 6.0, _CURVES["spleen"]),
    "kidney_cortex": Tissue(32.0, 4.0, 6.0, _CURVES["kidney_cortex"]),
    "kidney_medulla": Tissue(30.0, 4.0, 6.0, _CURVES["kidney_medulla"]),
    "pancreas": Tissue(42.0, 6.0, 10.0, _CURVES["pancreas"]),
    "bile": Tissue(8.0, 6.0, 2.0),
    "gut_wall": Tissue(40.0, 5.0, 6.0, _CURVES["gut_wall"]),
    "gut_fluid": Tissue(10.0, 6.0, 4.0),
    "stool": Tissue(-20.0, 30.0, 60.0),
    "adrenal": Tissue(30.0, 5.0, 4.0, _CURVES["pancreas"]),
}


@dataclass(frozen=True)
class RealisticPreset:
    """Every parameter of the ``realistic`` phantom preset (values and sources: ``docs/PHANTOMS.md``).

    Lengths in mm, intensities in HU, times in seconds; ``(mean, sd)`` pairs are normal distributions between
    subjects unless noted.
    """

    # the scanner's field of view (x, y, z); spacing = fov_mm / size
    fov_mm: Vec = (360.0, 360.0, 270.0)
    # L1's centre relative to the field of view's centre (mean), and the between-subject sd of the scan's centring
    l1_position_mm: Vec = (0.0, -25.0, -15.0)
    centring_sd_mm: Vec = (8.0, 8.0, 20.0)
    # habitus: skin-to-skin lateral width and anterior-posterior depth, subcutaneous fat, abdominal wall muscle;
    # one shared habitus score correlates them (a larger person is wider, deeper and fatter)
    body_width_mm: tuple[float, float] = (320.0, 30.0)
    body_depth_mm: tuple[float, float] = (235.0, 30.0)
    subcutaneous_fat_mm: tuple[float, float] = (22.0, 10.0)
    wall_muscle_mm: float = 12.0
    habitus_correlation: float = 0.8
    # how strongly organ positions spread with the cavity's width and depth (1: proportionally, 0: not at all)
    habitus_coupling: float = 0.6
    # distance from the vertebral body's centre to the posterior skin, excluding fat (back muscles, posterior arch)
    back_depth_mm: float = 72.0
    vertebra_pitch_mm: tuple[float, float] = (35.0, 2.5)
    # diaphragm level and organ displacements: respiration plus anatomy (craniocaudal sd), grouped movements
    diaphragm_sd_mm: float = 12.0
    group_shift_sd_mm: Vec = (7.0, 7.0, 9.0)
    organ_shift_sd_mm: Vec = (5.0, 5.0, 6.0)
    # smooth deformation of the whole anatomy: sd of the displacement and the spacing of its control points
    warp_sd_mm: float = 4.0
    warp_spacing_mm: float = 80.0
    lobulation_spacing_mm: float = 30.0
    texture_spacing_mm: float = 9.0
    # contrast timing: share of native scans, the range of times after injection (log-uniform), the buckets' ends,
    # the between-subject spread of circulation time and of enhancement (dose per kg, cardiac output), per organ
    native_probability: float = 0.2
    contrast_time_range_s: tuple[float, float] = (18.0, 240.0)
    arterial_end_s: float = 45.0
    portal_venous_end_s: float = 110.0
    circulation_delay_sd_s: float = 4.0
    enhancement_scale_sd: float = 0.15
    organ_enhancement_sd: float = 0.08
    spleen_arterial_heterogeneity_hu: float = 45.0
    steatosis_probability: float = 0.15
    steatosis_liver_hu: tuple[float, float] = (32.0, 10.0)
    # gut contents: positive oral contrast, stomach gas share of the lumen, bowel gas and loop density
    oral_contrast_probability: float = 0.15
    oral_contrast_hu: tuple[float, float] = (220.0, 60.0)
    stomach_gas_fraction: tuple[float, float] = (0.0, 0.45)  # uniform range
    colon_gas_fraction: tuple[float, float] = (0.05, 0.5)  # uniform range
    stomach_wall_mm: float = 5.0
    stomach_label_includes_contents: bool = True
    bowel_wall_mm: float = 3.0
    bowel_gas_probability: float = 0.35
    small_bowel_loop_width: float = 0.22
    # the scanner: quantum noise sd (uniform range) in a reconstruction of the reference voxel size, which a coarser
    # grid averages down (sd x sqrt(reference voxel volume / voxel volume)), its correlation length, and the point
    # spread (voxels)
    noise_sd_hu: tuple[float, float] = (10.0, 30.0)
    noise_reference_voxel_mm: Vec = (0.78, 0.78, 5.0)
    noise_correlation_voxels: float = 0.8
    blur_voxels: float = 0.5
    tissues: Mapping[str, Tissue] = field(default_factory=lambda: dict(TISSUES))
    organs: tuple[Structure, ...] = ORGANS
    vessels: tuple[Structure, ...] = VESSELS
    bowel: tuple[Structure, ...] = BOWEL


REALISTIC = RealisticPreset()
