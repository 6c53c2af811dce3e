"""One ``realistic`` phantom subject's random draws, made before anything is painted.

Body habitus (width, depth, subcutaneous fat) and the anatomy's spread with it, the scan's centring on the first
lumbar vertebra (L1), the diaphragm level, grouped organ displacements, the contrast time after injection (or none) and
its phase bucket, every tissue's Hounsfield units at that time, and the scanner's noise level. The draws are taken from
the generator in a fixed order, so the same seed gives the same subject.
"""

from __future__ import annotations

import numpy as np

from .enhancement import phase_bucket
from .realistic_preset import RealisticPreset

__all__ = ["RealisticSubject"]


class RealisticSubject:
    """One subject's draws: habitus, placement, contrast timing and tissue intensities (:mod:`.realistic_phantom`)."""

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
