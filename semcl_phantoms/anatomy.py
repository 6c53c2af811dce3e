"""Organ table of the embedded abdominal CT phantom.

Coordinates are normalised to the field of view: every axis spans [-1, 1] in RAS+ orientation
(x: patient's left -> right, y: posterior -> anterior, z: inferior -> superior). Organ names and order
follow BTCV's (Beyond the Cranial Vault) abdominal labels, restricted to the eight organs the phantom draws.

Intensities are Hounsfield units per contrast phase. The ranges overlap on purpose (spleen, liver, pancreas and
stomach wall sit within a few tens of HU of each other in at least one phase), and each subject draws its own phase
and per-organ offset, so that an organ's mean HU moves between subjects as it does between contrast phases: intensity
alone cannot segment the phantom.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Organ", "ORGANS", "CONTRAST_PHASES", "LABEL_NAMES", "TISSUE_HU"]

CONTRAST_PHASES: tuple[str, ...] = ("native", "arterial", "portal_venous")


@dataclass(frozen=True)
class Organ:
    """One organ of the phantom.

    Attributes:
        label: class id written to the phantom's label map (1..8).
        name: BTCV-style organ name.
        btcv_label: the organ's id in BTCV's 13-organ label map, for users mapping to real data.
        centre: (x, y, z) centre in normalised coordinates.
        semi_axes: (a, b, c) ellipsoid semi-axes in normalised units.
        hu: mean Hounsfield units per contrast phase, aligned with ``CONTRAST_PHASES``.
        texture_hu: amplitude (HU) of the organ's smooth internal texture.
        tilt_deg: rotation about the z axis (degrees) of the organ's own frame before per-subject variation.
        presence: probability that a subject has the organ (gallbladder: often removed).
        tube: if True the organ is a vertical cylinder spanning the whole z range (aorta) rather than an ellipsoid.
    """

    label: int
    name: str
    btcv_label: int
    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    hu: tuple[float, float, float]
    texture_hu: float
    tilt_deg: float = 0.0
    presence: float = 1.0
    tube: bool = False


# Painted in this order: later organs overwrite earlier ones where they touch (the gallbladder sits in the liver).
ORGANS: tuple[Organ, ...] = (
    Organ(5, "liver", 6, (0.42, 0.02, 0.30), (0.40, 0.42, 0.42), (58.0, 75.0, 110.0), 10.0, tilt_deg=-10.0),
    Organ(1, "spleen", 1, (-0.55, -0.20, 0.32), (0.15, 0.22, 0.24), (48.0, 105.0, 120.0), 12.0, tilt_deg=30.0),
    Organ(2, "right kidney", 2, (0.32, -0.38, -0.10), (0.12, 0.13, 0.24), (32.0, 180.0, 165.0), 25.0, tilt_deg=-20.0),
    Organ(3, "left kidney", 3, (-0.32, -0.38, -0.02), (0.12, 0.13, 0.24), (32.0, 180.0, 165.0), 25.0, tilt_deg=20.0),
    Organ(
        4,
        "gallbladder",
        4,
        (0.26, 0.30, 0.02),
        (0.08, 0.08, 0.13),
        (12.0, 15.0, 18.0),
        4.0,
        tilt_deg=25.0,
        presence=0.75,
    ),
    Organ(6, "stomach", 7, (-0.25, 0.28, 0.40), (0.24, 0.16, 0.20), (32.0, 60.0, 75.0), 15.0, tilt_deg=-25.0),
    Organ(7, "aorta", 8, (-0.06, -0.24, 0.0), (0.055, 0.055, 1.0), (42.0, 290.0, 155.0), 8.0, tube=True),
    Organ(
        8,
        "pancreas",
        11,
        (-0.05, 0.02, 0.08),
        (0.32, 0.065, 0.08),
        (42.0, 115.0, 95.0),
        15.0,
        tilt_deg=15.0,
        presence=0.95,
    ),
)

LABEL_NAMES: dict[int, str] = {0: "background", **{o.label: o.name for o in sorted(ORGANS, key=lambda o: o.label)}}

# Background tissues (mean HU, texture amplitude).
TISSUE_HU: dict[str, tuple[float, float]] = {
    "air": (-1000.0, 0.0),
    "subcutaneous_fat": (-105.0, 10.0),
    "muscle": (45.0, 8.0),
    "visceral_fat": (-85.0, 15.0),
    "bowel": (20.0, 25.0),
    "bone_cortex": (700.0, 60.0),
    "bone_marrow": (220.0, 40.0),
    "spinal_canal": (15.0, 5.0),
}
