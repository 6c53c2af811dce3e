"""The body of a ``realistic`` phantom subject: outline, fat, muscles, lung bases, heart, vertebrae and ribs.

Drawn in world millimetres around the subject's first lumbar vertebra (L1); the body's cross-section is an ellipse of
the subject's width and depth, flattened where it lies on the table, with subcutaneous fat, an abdominal wall and a
visceral cavity inside, which is where organs may lie (``painter.cavity``). Above the two diaphragmatic domes the
lung bases (``painter.lung``) keep organs out. Bones come last and are labelled background.
"""

from __future__ import annotations

import numpy as np

from .implicit_shapes import ellipsoid_distance, half_space_distance
from .realistic_anatomy import Structure, Tube
from .realistic_painter import Painter

__all__ = ["paint_body", "paint_bones"]

_FAR = 1.0e6  # a semi-axis long enough to make an ellipsoid an infinite elliptic cylinder along z
_IDENTITY = np.eye(3, dtype=np.float32)
# thoracic ribs in the field of view: (vertebral level above L1, angle around the body where the rib ends (degrees
# from the posterior midline), how far it descends from its vertebra to that end (mm))
_RIBS = ((1, 80.0, 40.0), (2, 110.0, 60.0), (3, 130.0, 80.0), (4, 145.0, 90.0), (5, 150.0, 95.0), (6, 155.0, 95.0))


def _cylinder(painter: Painter, centre_xy, semi_xy) -> np.ndarray:
    coords = painter.grid.coords(painter.grid.everything)
    centre = (centre_xy[0], centre_xy[1], 0.0)
    return ellipsoid_distance(coords, centre, (semi_xy[0], semi_xy[1], _FAR), _IDENTITY)


def paint_body(painter: Painter) -> None:
    """Body outline, subcutaneous fat, abdominal wall, visceral fat, back muscles, lung bases and the heart's apex."""
    sub, grid, everything = painter.subject, painter.grid, painter.grid.everything
    coords = grid.coords(everything)
    centre = (float(sub.l1[0]), float(sub.l1[1] + sub.body_y))
    posterior_skin = float(sub.l1[1]) - painter.preset.back_depth_mm - sub.fat
    table = half_space_distance(coords, (0.0, posterior_skin + 12.0, 0.0), (0.0, -1.0, 0.0))  # flat where it lies
    half = (sub.width / 2.0, sub.depth / 2.0)
    for tissue, inset in (
        ("subcutaneous_fat", 0.0),
        ("muscle", sub.fat),
        ("visceral_fat", sub.fat + painter.preset.wall_muscle_mm),
    ):
        distance = np.maximum(_cylinder(painter, centre, (half[0] - inset, half[1] - inset)), table + inset)
        occupancy = grid.occupancy(distance)
        painter.paint(everything, occupancy, tissue, 0)
    painter.cavity = occupancy
    # back muscles (erector spinae) and psoas beside the spine
    for side in (1.0, -1.0):
        back = Structure(
            "erector spinae",
            "muscle",
            0,
            (0.0, 0.0, 0.0),
            (Tube(((side * 40, -50, 200), (side * 40, -52, -200)), (24.0, 24.0)),),
        )
        psoas = Structure(
            "psoas",
            "muscle",
            0,
            (0.0, 0.0, 0.0),
            (Tube(((side * 24, 0, 20), (side * 34, 4, -60), (side * 44, 8, -200)), (7.0, 18.0, 26.0)),),
        )
        for muscle in (back, psoas):
            painter.organ(muscle, None)
    # lung bases above two diaphragmatic domes (right higher), and the heart resting on the left dome
    domes = None
    for x, top in ((60.0, 142.0), (-60.0, 132.0)):
        dome_centre = painter.world((x, 20.0, top - 110.0)) + np.array([0.0, 0.0, sub.diaphragm], dtype=np.float32)
        d = ellipsoid_distance(coords, dome_centre, (100.0, 120.0, 110.0), _IDENTITY)
        domes = d if domes is None else np.minimum(domes, d)
    base = float(painter.world((0.0, 0.0, 132.0 - 110.0))[2] + sub.diaphragm)
    above = np.clip(0.5 + (coords[2] - base) / grid.voxel_mm, 0.0, 1.0)
    painter.lung = grid.occupancy(-domes) * painter.cavity * above
    painter.paint(everything, painter.lung, "lung", 0)
    heart_centre = painter.world((-25.0, 62.0, 190.0)) + np.array([0.0, 0.0, sub.diaphragm], dtype=np.float32)
    heart = grid.occupancy(ellipsoid_distance(coords, heart_centre, (70.0, 55.0, 60.0), _IDENTITY)) * painter.lung
    painter.paint(everything, heart, "blood_arterial", 0)
    painter.lung = painter.lung * (1.0 - heart)


def paint_bones(painter: Painter) -> None:
    """Vertebrae (bodies, discs, posterior arches, spinous and transverse processes, spinal canal) and ribs."""
    sub, grid = painter.subject, painter.grid
    pitch, levels = sub.pitch, range(-5, 8)
    l1 = sub.l1

    def tube(name: str, tissue: str, points, radii) -> None:
        relative = [tuple(float(v) for v in np.asarray(q) - l1) for q in points]
        s = Structure(name, tissue, 0, (0.0, 0.0, 0.0), (Tube(tuple(relative), tuple(radii)),))
        placed = _unscaled(painter, s)
        if placed is not None:
            region, distance = placed
            painter.paint(region, grid.occupancy(distance), tissue, 0)

    column = [l1 + np.array([0.0, 0.0, k * pitch], dtype=np.float32) for k in (levels[0], levels[-1])]
    tube("intervertebral discs", "disc", column, (19.0, 19.0))
    for k in levels:
        lumbar = k <= 0
        width = 17.0 + (2.0 if lumbar else 0.0)
        for tissue, inset in (("bone_cortex", 0.0), ("bone_marrow", 2.5)):
            top, bottom = l1 + np.array(
                [0.0, 0.0, k * pitch + pitch / 2 - 4.5 - inset], dtype=np.float32
            ), l1 + np.array([0.0, 0.0, k * pitch - pitch / 2 + 4.5 + inset], dtype=np.float32)
            tube("vertebral body", tissue, (bottom, top), (width - inset, width - inset))
        tube(
            "posterior arch",
            "bone_cortex",
            (l1 + [-14.0, -30.0, k * pitch], l1 + [14.0, -30.0, k * pitch]),
            (12.0, 12.0),
        )
        tube(
            "spinous process",
            "bone_cortex",
            (l1 + [0.0, -40.0, k * pitch], l1 + [0.0, -64.0, k * pitch - 12.0]),
            (6.0, 5.0),
        )
        reach = 40.0 if lumbar else 30.0
        for side in (1.0, -1.0):
            tube(
                "transverse process",
                "bone_cortex",
                (l1 + [side * 10.0, -30.0, k * pitch], l1 + [side * reach, -36.0, k * pitch]),
                (5.0, 4.0),
            )
    tube("spinal canal", "spinal_canal", (column[0] + [0.0, -30.0, 0.0], column[1] + [0.0, -30.0, 0.0]), (9.0, 9.0))
    # ribs: from the transverse process, around the inside of the body wall, descending as they go forward
    a = sub.width / 2.0 - sub.fat - 0.5 * painter.preset.wall_muscle_mm
    b = sub.depth / 2.0 - sub.fat - 0.5 * painter.preset.wall_muscle_mm
    for level, end_deg, drop in _RIBS:
        z0 = float(l1[2] + level * pitch)
        for side in (1.0, -1.0):
            angles = np.deg2rad(np.linspace(30.0, end_deg, 7))
            points = [
                np.array(
                    [side * a * np.sin(t), l1[1] + sub.body_y - b * np.cos(t), z0 - drop * (1 - np.cos(t)) / 2],
                    dtype=np.float32,
                )
                for t in angles
            ]
            points.insert(0, l1 + np.array([side * 32.0, -34.0, level * pitch], dtype=np.float32))
            tube("rib", "bone_cortex", points, (5.5,) * len(points))


def _unscaled(painter: Painter, s):
    """A structure drawn at its template's size and position relative to L1 (bones do not spread with habitus)."""
    saved = painter.subject.habitus_scale
    painter.subject.habitus_scale = np.ones(3, dtype=np.float32)
    try:
        return painter.structure(s, volume_scale=1.0)
    finally:
        painter.subject.habitus_scale = saved
