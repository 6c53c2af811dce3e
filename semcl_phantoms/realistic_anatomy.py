"""Template anatomy of the ``realistic`` phantom preset: where each structure lies and what shape it has, in mm.

The templates are the population's mean anatomy; how much they vary between subjects, and every other parameter of
the preset, is in :class:`.realistic_preset.RealisticPreset`. Sources and judgement calls: ``docs/PHANTOMS.md``.

Anatomical frame: millimetres, RAS+ (x: towards the patient's right, y: anterior, z: superior), origin at the centre
of the first lumbar vertebral body (L1). Each :class:`Structure` is a template in its own frame around ``centre``: a
smooth union of ellipsoid lobes (:class:`Blob`, some subtracted: the spleen's hilar concavity, the kidney's sinus)
or tubes along polylines (:class:`Tube`: stomach, pancreas, bowel, vessels). The generator scales, rotates, moves
and deforms each template per subject. Labelled organs keep the ids and names of :mod:`.anatomy` (BTCV's); every
other structure is a distractor written as background (label 0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["BOWEL", "Blob", "ORGANS", "Structure", "Tube", "VESSELS"]

Vec = tuple[float, float, float]


@dataclass(frozen=True)
class Blob:
    """An ellipsoid lobe of a template: centre and semi-axes in mm in the structure's frame; ``subtract`` carves."""

    centre: Vec
    semi_axes: Vec
    subtract: bool = False


@dataclass(frozen=True)
class Tube:
    """A tube through ``points`` (mm, structure frame) with a radius (mm) per point."""

    points: tuple[Vec, ...]
    radii: tuple[float, ...]


@dataclass(frozen=True)
class Structure:
    """One drawn structure (organ or distractor) of the template anatomy.

    Attributes:
        name: what it is.
        tissue: key into :attr:`.realistic_preset.RealisticPreset.tissues`.
        label: the id written to the label map (1..8, names in ``anatomy.LABEL_NAMES``); 0 for a distractor, which
            clears any organ label under it; None keeps the label under it (vessels inside an organ).
        centre: position of the template's origin in the anatomical frame (mm).
        parts: lobes and tubes in the structure's frame.
        group: which movement it follows: ``right`` (liver, gallbladder, right kidney, duodenum, pancreatic head side),
            ``left`` (spleen, stomach, left kidney, pancreatic tail), ``midline`` (pancreas, mesenteric vessels),
            ``spine`` (aorta, IVC, bones: fixed to the vertebrae) or ``bowel``.
        breathes: moves craniocaudally with the diaphragm (respiration and between-subject diaphragm level).
        blend_mm: fillet radius of the smooth union of the parts.
        cut: optional (point, outward normal) half-space that trims the union (the liver's inferior surface).
        volume_cv: coefficient of variation of the volume between subjects (the template has the mean volume).
        rotation_sd_deg: standard deviation of the random rotation about each axis.
        lobulation_mm: amplitude of smooth random bumps on the surface.
    """

    name: str
    tissue: str
    label: int | None
    centre: Vec
    parts: tuple[Blob | Tube, ...]
    group: str = "spine"
    breathes: bool = False
    blend_mm: float = 0.0
    cut: tuple[Vec, Vec] | None = None
    volume_cv: float = 0.0
    rotation_sd_deg: float = 0.0
    lobulation_mm: float = 0.0


def _mirror(structure: Structure, name: str, label: int | None) -> Structure:
    """The left-right mirror image of a structure (x -> -x for its centre and parts; a ``right`` group becomes ``left``
    and vice versa, so a mirrored organ moves with its own side)."""

    def flip(v: Vec) -> Vec:
        return (-v[0], v[1], v[2])

    parts = tuple(
        (
            replace(p, centre=flip(p.centre))
            if isinstance(p, Blob)
            else replace(p, points=tuple(flip(q) for q in p.points))
        )
        for p in structure.parts
    )
    group = {"right": "left", "left": "right"}.get(structure.group, structure.group)
    return replace(structure, name=name, label=label, centre=flip(structure.centre), parts=parts, group=group)


_LIVER = Structure(
    "liver",
    "liver",
    5,
    (52.0, 32.0, 56.0),
    parts=(
        Blob((12.0, 0.0, 0.0), (62.0, 78.0, 76.0)),  # right lobe
        Blob((-62.0, 26.0, 18.0), (52.0, 40.0, 30.0)),  # left lobe, anterior to the stomach
        Blob((-18.0, -30.0, 14.0), (24.0, 24.0, 34.0)),  # caudate lobe, beside the IVC
    ),
    group="right",
    breathes=True,
    blend_mm=18.0,
    cut=((0.0, 0.0, -36.0), (-0.3, 0.35, -1.0)),  # inferior (visceral) surface: lower laterally and anteriorly
    volume_cv=0.2,
    rotation_sd_deg=6.0,
    lobulation_mm=5.0,
)
_RIGHT_KIDNEY = Structure(
    "right kidney",
    "kidney_cortex",
    2,
    (66.0, 2.0, -42.0),
    parts=(Blob((0.0, 0.0, 0.0), (27.0, 24.0, 56.0)), Blob((-24.0, 8.0, 0.0), (13.0, 13.0, 24.0), subtract=True)),
    group="right",
    breathes=True,
    blend_mm=0.0,
    volume_cv=0.2,
    rotation_sd_deg=8.0,
    lobulation_mm=2.0,
)
ORGANS: tuple[Structure, ...] = (
    _LIVER,
    Structure(
        "spleen",
        "spleen",
        1,
        (-90.0, -12.0, 52.0),
        parts=(Blob((0.0, 0.0, 0.0), (32.4, 60.4, 62.6)), Blob((34.5, 28.1, 0.0), (28.1, 45.3, 56.1), subtract=True)),
        group="left",
        breathes=True,
        volume_cv=0.4,
        rotation_sd_deg=10.0,
        lobulation_mm=4.0,
    ),
    _RIGHT_KIDNEY,
    _mirror(replace(_RIGHT_KIDNEY, centre=(66.0, 2.0, -26.0)), "left kidney", 3),
    Structure(
        "stomach",
        "gut_wall",
        6,
        (-50.0, 48.0, 60.0),
        parts=(
            Tube(
                ((-14.0, -34.0, 46.0), (-4.0, 2.0, 6.0), (12.0, 22.0, -36.0), (50.0, 28.0, -52.0), (84.0, 12.0, -46.0)),
                (38.0, 34.0, 28.0, 20.0, 12.0),
            ),
        ),
        group="left",
        breathes=True,
        volume_cv=0.35,
        rotation_sd_deg=8.0,
        lobulation_mm=4.0,
    ),
    # in the gallbladder fossa: its body lies against the liver's visceral surface (painted after the liver, so it
    # carves its fossa), its fundus projects below the liver's inferior edge
    Structure(
        "gallbladder",
        "bile",
        4,
        (40.0, 58.0, 34.0),
        parts=(Tube(((-11.5, -13.8, 27.7), (9.2, 11.5, -27.7)), (10.4, 17.3)),),
        group="right",
        breathes=True,
        volume_cv=0.4,
        rotation_sd_deg=12.0,
        lobulation_mm=1.5,
    ),
    Structure(
        "pancreas",
        "pancreas",
        8,
        (-8.0, 48.0, -10.0),
        parts=(
            Tube(
                (
                    (40.0, 2.0, -26.0),
                    (20.0, 14.0, -6.0),
                    (-12.0, 12.0, 4.0),
                    (-52.0, -10.0, 24.0),
                    (-74.0, -30.0, 38.0),
                ),
                (17.9, 13.5, 12.3, 11.2, 9.0),
            ),
        ),
        group="midline",
        breathes=True,
        volume_cv=0.25,
        rotation_sd_deg=6.0,
        lobulation_mm=3.0,
    ),
)

VESSELS: tuple[Structure, ...] = (
    Structure(
        "aorta",
        "blood_arterial",
        7,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(
                (
                    (-14.0, 8.0, 160.0),
                    (-13.0, 24.0, 80.0),
                    (-12.0, 32.0, 0.0),
                    (-9.0, 32.0, -80.0),
                    (-4.0, 32.0, -140.0),
                ),
                (12.5, 12.0, 11.0, 10.0, 9.5),
            ),
        ),
        volume_cv=0.2,
    ),
    Structure(
        "inferior vena cava",
        "blood_venous",
        0,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(
                (
                    (28.0, 28.0, -140.0),
                    (24.0, 28.0, -40.0),
                    (28.0, 22.0, 30.0),
                    (20.0, 8.0, 110.0),
                    (10.0, 14.0, 160.0),
                ),
                (11.0, 12.0, 13.0, 13.0, 14.0),
            ),
        ),
        volume_cv=0.2,
    ),
    Structure(
        "portal and splenic veins",
        "blood_portal",
        0,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(((12.0, 46.0, -15.0), (40.0, 40.0, 28.0), (58.0, 36.0, 44.0)), (7.5, 8.0, 6.0)),
            Tube(((12.0, 46.0, -15.0), (-20.0, 46.0, -5.0), (-58.0, 28.0, 16.0), (-78.0, 12.0, 40.0)), (5.0,) * 4),
            Tube(((12.0, 46.0, -15.0), (8.0, 56.0, -60.0), (6.0, 62.0, -130.0)), (5.5, 5.0, 4.5)),  # SMV
        ),
        group="midline",
        breathes=True,
    ),
    Structure(
        "hepatic veins",
        "blood_venous",
        None,
        (0.0, 0.0, 0.0),
        parts=tuple(
            Tube((p, (20.0, 10.0, 108.0)), (4.0, 6.5))
            for p in ((95.0, 5.0, 70.0), (40.0, 45.0, 75.0), (-20.0, 40.0, 85.0))
        ),
        group="right",
        breathes=True,
    ),
    Structure(
        "celiac trunk, superior mesenteric artery",
        "blood_arterial",
        0,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(((-10.0, 36.0, 18.0), (-6.0, 54.0, 22.0)), (4.0, 3.5)),
            Tube(((-10.0, 36.0, -2.0), (-8.0, 52.0, -25.0), (-4.0, 58.0, -130.0)), (4.0, 4.0, 3.0)),
        ),
        group="midline",
    ),
    Structure(
        "left renal vein",
        "blood_venous",
        0,
        (0.0, 0.0, 0.0),
        parts=(Tube(((-44.0, 10.0, -26.0), (-12.0, 43.0, -24.0), (24.0, 30.0, -26.0)), (5.0, 4.0, 5.0)),),
    ),
    Structure(
        "adrenal glands",
        "adrenal",
        0,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(((32.0, 16.0, 2.0), (40.0, 4.0, 28.0)), (2.5, 3.5)),
            Tube(((-32.0, 20.0, -8.0), (-40.0, 6.0, 20.0)), (2.5, 3.5)),
        ),
    ),
)

BOWEL: tuple[Structure, ...] = (
    Structure(
        "duodenum",
        "gut_wall",
        0,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(
                (
                    (34.0, 60.0, 14.0),
                    (56.0, 42.0, 0.0),
                    (60.0, 34.0, -46.0),
                    (34.0, 40.0, -72.0),
                    (0.0, 42.0, -72.0),
                    (-26.0, 46.0, -52.0),
                ),
                (12.0, 13.0, 13.0, 12.0, 11.0, 10.0),
            ),
        ),
        group="right",
        breathes=True,
        rotation_sd_deg=5.0,
    ),
    Structure(
        "colon",
        "gut_wall",
        0,
        (0.0, 0.0, 0.0),
        parts=(
            Tube(
                (
                    (92.0, 22.0, -150.0),
                    (94.0, 22.0, -60.0),
                    (82.0, 48.0, -32.0),
                    (40.0, 92.0, -44.0),
                    (-30.0, 92.0, -38.0),
                    (-86.0, 44.0, 16.0),
                    (-98.0, 12.0, -40.0),
                    (-96.0, 16.0, -150.0),
                ),
                (20.0, 20.0, 18.0, 16.0, 16.0, 16.0, 16.0, 16.0),
            ),
        ),
        group="bowel",
        rotation_sd_deg=4.0,
    ),
)
