"""PNG previews of CT volumes with their label overlays, in radiological convention.

:func:`write_preview`: three orthogonal slices of one subject. :func:`write_cohort_preview`: several subjects side by
side (axial and coronal slices, each without and with the label overlay) so the variability between subjects shows.
:func:`write_comparison`: one case's ground truth beside a prediction.

Every slice is oriented by the volume's affine (NIfTI RAS+ world, as nibabel gives it), whatever the array's axis order
or flips, and shown as CT viewers show it: axial and coronal with the patient's right on the image's left, anterior
(axial) or superior (coronal, sagittal) at the top, sagittal with anterior on the left. Each panel carries orientation
letters at its edges and is resampled (nearest neighbour) to a fixed number of mm per pixel, so anisotropic voxels
keep their true proportions. :func:`oriented_slice` does the orienting for all three writers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "PLANES",
    "OrientedSlice",
    "label_colours",
    "oriented_slice",
    "write_cohort_preview",
    "write_comparison",
    "write_preview",
]

PLANES = ("axial", "coronal", "sagittal")
# the RAS+ axis each plane holds fixed
_PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
# the letters at the negative and positive ends of the RAS+ axes
_AXIS_ENDS = (("L", "R"), ("P", "A"), ("I", "S"))
_LETTER_COLOUR = (255, 220, 0)
_GAP = 8
_LINE = 14
_MARGIN = 16  # room for the orientation letters around each slice


class OrientedSlice(NamedTuple):
    """A 2D slice ready to display: row 0 at the top, column 0 on the left.

    Attributes:
        pixels: (rows, columns) values of the volume.
        letters: edge ("left", "right", "top", "bottom") -> the patient direction that edge faces (R, L, A, P, S, I).
        spacing: (row, column) pixel size in mm.
        index: the slice's index along the plane's axis in the RAS+-reoriented volume.
    """

    pixels: np.ndarray
    letters: dict[str, str]
    spacing: tuple[float, float]
    index: int


def _zooms(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing (mm) along each voxel axis of ``affine``."""
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def oriented_slice(volume: np.ndarray, affine: np.ndarray, plane: str, index: Sequence[float]) -> OrientedSlice:
    """The ``plane`` slice of ``volume`` through voxel ``index``, oriented for display in radiological convention.

    The volume is reoriented to the closest RAS+ axes of ``affine`` (``nibabel.orientations``), sliced, and laid out
    as CT viewers do: axial (R left, L right, A top, P bottom), coronal (R left, L right, S top, I bottom), sagittal
    (A left, P right, S top, I bottom). So two volumes with the same world content give the same pixels, whatever
    their voxel axis order or flips.

    Args:
        volume: (X, Y, Z) array in ``affine``'s voxel order.
        affine: 4x4 voxel -> world (mm, RAS+) matrix.
        plane: "axial", "coronal" or "sagittal".
        index: voxel coordinates (i, j, k) in ``volume``'s own order that the slice passes through (floats are
            rounded after reorienting, so flipped copies of a volume pick the same slice).

    Returns:
        the displayed pixels, the letter at each edge, the pixel spacing (row, column) in mm and the slice index.
    """
    if plane not in _PLANE_AXIS:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}.")
    volume = np.asarray(volume)
    affine = np.asarray(affine, dtype=float)
    if volume.ndim != 3 or affine.shape != (4, 4) or len(index) != 3:
        raise ValueError(f"need a 3D volume, a 4x4 affine and 3 voxel coordinates, got {volume.shape}, {affine.shape}.")
    ornt = io_orientation(affine)
    canonical = apply_orientation(volume, ornt)
    zooms = _zooms(affine)
    ras_zooms, ras_index = np.zeros(3), np.zeros(3)
    for axis, (target, flip) in enumerate(ornt.astype(int)):
        ras_zooms[target] = zooms[axis]
        ras_index[target] = index[axis] if flip == 1 else volume.shape[axis] - 1 - index[axis]
    fixed = _PLANE_AXIS[plane]
    across, up = (a for a in range(3) if a != fixed)  # shown as columns (reversed) and rows (reversed)
    position = int(np.clip(np.rint(ras_index[fixed]), 0, canonical.shape[fixed] - 1))
    section = np.take(canonical, position, axis=fixed)  # (across, up)
    pixels = np.ascontiguousarray(section.T[::-1, ::-1])  # column 0: the across axis' positive end
    letters = {
        "left": _AXIS_ENDS[across][1],
        "right": _AXIS_ENDS[across][0],
        "top": _AXIS_ENDS[up][1],
        "bottom": _AXIS_ENDS[up][0],
    }
    return OrientedSlice(pixels, letters, (float(ras_zooms[up]), float(ras_zooms[across])), position)


def label_colours(num_labels: int) -> np.ndarray:
    """Distinct RGB colours (uint8, shape (num_labels + 1, 3)); row 0 (background) is black."""
    hues = np.linspace(0.0, 1.0, num_labels, endpoint=False)
    # HSV -> RGB with full saturation and value
    k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6.0) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.concatenate([np.zeros((1, 3)), rgb]).__mul__(255).astype(np.uint8)


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (its fixed bitmap font where Pillow lacks FreeType)."""
    return ImageFont.load_default(size=size)


def _centre(label: np.ndarray, ids: Sequence[int] | None = None) -> np.ndarray | None:
    """Mean voxel coordinates (float) of the labels in ``ids`` (default: all foreground), or None if there are none."""
    inside = np.isin(label, ids) if ids is not None else label > 0
    found = np.argwhere(inside)
    return found.mean(axis=0) if len(found) else None


def _panel(
    image: np.ndarray,
    label: np.ndarray | None,
    affine: np.ndarray,
    plane: str,
    index: Sequence[float],
    colours: np.ndarray,
    window: tuple[float, float],
    alpha: float,
    pixel_mm: float,
    title: str,
) -> Image.Image:
    """One titled panel: the oriented slice in the display window, the label overlay (if any), orientation letters."""
    grey_slice = oriented_slice(image, affine, plane, index)
    low, high = window
    rgb = np.repeat(np.clip((grey_slice.pixels - low) / (high - low), 0.0, 1.0)[..., None] * 255.0, 3, axis=-1)
    if label is not None and alpha > 0:
        lab = oriented_slice(label, affine, plane, index).pixels.astype(np.int64)
        overlay = colours[np.clip(lab, 0, len(colours) - 1)].astype(np.float64)
        rgb = np.where((lab > 0)[..., None], (1.0 - alpha) * rgb + alpha * overlay, rgb)
    rows, columns = grey_slice.pixels.shape
    row_mm, column_mm = grey_slice.spacing
    size = (max(1, round(columns * column_mm / pixel_mm)), max(1, round(rows * row_mm / pixel_mm)))
    picture = Image.fromarray(rgb.astype(np.uint8)).resize(size, Image.NEAREST)
    panel = Image.new("RGB", (size[0] + 2 * _MARGIN, _LINE + size[1] + 2 * _MARGIN), "black")
    panel.paste(picture, (_MARGIN, _LINE + _MARGIN))
    draw = ImageDraw.Draw(panel)
    draw.text((2, 1), title, fill="white", font=_font(11))
    font = _font(13)
    # each letter centred in the margin on its edge, so it hides none of the slice
    centres = {
        "left": (_MARGIN / 2, _LINE + _MARGIN + size[1] / 2),
        "right": (1.5 * _MARGIN + size[0], _LINE + _MARGIN + size[1] / 2),
        "top": (_MARGIN + size[0] / 2, _LINE + _MARGIN / 2),
        "bottom": (_MARGIN + size[0] / 2, _LINE + 1.5 * _MARGIN + size[1]),
    }
    for edge, letter in grey_slice.letters.items():
        left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
        x, y = centres[edge]
        draw.text(
            (round(x - (left + right) / 2), round(y - (top + bottom) / 2)), letter, fill=_LETTER_COLOUR, font=font
        )
    return panel


def _grid(rows: Sequence[Sequence[Image.Image]], column_titles: Sequence[str] | None = None) -> Image.Image:
    """Panels in rows and columns (each cell as wide as its column's widest panel), with optional column titles."""
    columns = max(len(row) for row in rows)
    widths = [max(row[c].width for row in rows if c < len(row)) for c in range(columns)]
    heights = [max(p.height for p in row) for row in rows]
    head = _LINE + 2 if column_titles else 0
    canvas = Image.new(
        "RGB", (sum(widths) + _GAP * (columns - 1), head + sum(heights) + _GAP * (len(rows) - 1)), "black"
    )
    draw = ImageDraw.Draw(canvas)
    x_starts = np.cumsum([0] + [w + _GAP for w in widths])
    for c, text in enumerate(column_titles or []):
        draw.text((int(x_starts[c]) + 2, 1), text, fill="white", font=_font(12))
    y = head
    for row, height in zip(rows, heights):
        for c, panel in enumerate(row):
            canvas.paste(panel, (int(x_starts[c]), y))
        y += height + _GAP
    return canvas


def _legend(width: int, names: Mapping[int, str], colours: np.ndarray, title: str) -> Image.Image:
    """A strip with ``title`` and one coloured swatch per foreground label, as many per row as ``width`` allows."""
    rows = [(k, v) for k, v in sorted(names.items()) if k > 0]
    per_row = max(1, min(4, (width - 4) // 150))
    legend = Image.new("RGB", (width, 18 + _LINE * ((len(rows) + per_row - 1) // per_row) + 4), "black")
    draw = ImageDraw.Draw(legend)
    font = _font(12)
    draw.text((4, 2), title, fill="white", font=font)
    for i, (k, name) in enumerate(rows):
        x, y = 4 + (i % per_row) * 150, 18 + _LINE * (i // per_row)
        draw.rectangle((x, y + 2, x + 10, y + 11), fill=tuple(int(c) for c in colours[min(k, len(colours) - 1)]))
        draw.text((x + 16, y), f"{k}: {name}", fill="white", font=font)
    return legend


def _stack(parts: Sequence[Image.Image], path: str | os.PathLike) -> None:
    """Save ``parts`` one below the other (left-aligned, black background) as a PNG."""
    canvas = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "black")
    y = 0
    for part in parts:
        canvas.paste(part, (0, y))
        y += part.height
    canvas.save(path, optimize=True)


def _check(image: np.ndarray, affine: np.ndarray, *labels: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is 3D, every label has its shape and ``affine`` is 4x4."""
    if image.ndim != 3 or any(label.shape != image.shape for label in labels):
        shapes = ", ".join(str(a.shape) for a in (image, *labels))
        raise ValueError(f"image and labels must be 3D arrays of one shape, got {shapes}.")
    if np.shape(affine) != (4, 4):
        raise ValueError(f"affine must be 4x4, got {np.shape(affine)}.")


def _default_mm(shape: Sequence[int], affine: np.ndarray) -> float:
    """mm per pixel showing every voxel by at least one pixel and the largest extent by at least 256 pixels."""
    zooms = _zooms(affine)
    return float(min(zooms.min(), (zooms * np.asarray(shape)).max() / 256.0))


def _world(affine: np.ndarray, index: Sequence[float]) -> np.ndarray:
    """World (mm) coordinates of voxel ``index``."""
    return (np.asarray(affine, dtype=float) @ np.append(np.asarray(index, dtype=float), 1.0))[:3]


def write_preview(
    image: np.ndarray,
    label: np.ndarray,
    affine: np.ndarray,
    names: Mapping[int, str],
    path: str | os.PathLike,
    window: tuple[float, float] = (-160.0, 240.0),
    alpha: float = 0.45,
    pixel_mm: float | None = None,
) -> None:
    """Write axial, coronal and sagittal slices through the label's centre of mass, with a colour legend.

    Slices are in radiological convention with orientation letters (module docstring).

    Args:
        image: (X, Y, Z) intensities (HU), in ``affine``'s voxel order.
        label: (X, Y, Z) integer labels, in ``affine``'s voxel order.
        affine: 4x4 voxel -> world (mm, RAS+) matrix, as nibabel gives it.
        names: label id -> organ name (0 = background is not drawn).
        path: output PNG.
        window: display window in HU (default: abdominal soft tissue).
        alpha: overlay opacity.
        pixel_mm: mm per displayed pixel (default: the smallest voxel spacing, or finer so that the volume's
            largest extent spans 256 pixels).
    """
    _check(image, affine, label)
    centre = _centre(label)
    centre = np.array(image.shape, dtype=float) / 2.0 if centre is None else centre
    colours = label_colours(max(names) if names else 1)
    pixel_mm = pixel_mm or _default_mm(image.shape, affine)
    panels = [_panel(image, label, affine, plane, centre, colours, window, alpha, pixel_mm, plane) for plane in PLANES]
    tiles = _grid([panels])
    x, y, z = _world(affine, centre)
    title = f"through x={x:+.0f}, y={y:+.0f}, z={z:+.0f} mm (RAS); window {window[0]:g}..{window[1]:g} HU"
    _stack([tiles, _legend(max(tiles.width, 460), names, colours, title)], path)


def write_cohort_preview(
    subjects: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]],
    names: Mapping[int, str],
    path: str | os.PathLike,
    window: tuple[float, float] = (-160.0, 240.0),
    alpha: float = 0.45,
    pixel_mm: float = 2.0,
) -> None:
    """Write several subjects side by side: rows axial, axial + labels, coronal, coronal + labels.

    Slices are in radiological convention with orientation letters (module docstring).

    Args:
        subjects: (image (X, Y, Z) HU, label (X, Y, Z) integer, affine 4x4 voxel -> world mm RAS+, caption) per
            subject; each subject's arrays are in its affine's voxel order (subjects may differ in shape and spacing).
        names: label id -> organ name (0 = background is not drawn).
        path: output PNG.
        window: display window in HU.
        alpha: overlay opacity.
        pixel_mm: mm per displayed pixel, so anisotropic volumes show their true proportions.

    The axial slice passes through the centre of the kidneys' and pancreas' labels (or of all labels), the coronal
    slice through the centre of all labels, so each column shows the same anatomical level of its subject.
    """
    if not subjects:
        raise ValueError("write_cohort_preview needs at least one subject.")
    colours = label_colours(max(names) if names else 1)
    rows: list[list[Image.Image]] = [[], [], [], []]
    for image, label, affine, _ in subjects:
        _check(image, affine, label)
        everything = _centre(label)
        everything = np.array(image.shape, dtype=float) / 2.0 if everything is None else everything
        middle = _centre(label, [2, 3, 8])
        for row, (plane, point, a, title) in enumerate(
            (
                ("axial", middle if middle is not None else everything, 0.0, "axial"),
                ("axial", middle if middle is not None else everything, alpha, "axial + labels"),
                ("coronal", everything, 0.0, "coronal"),
                ("coronal", everything, alpha, "coronal + labels"),
            )
        ):
            rows[row].append(_panel(image, label, affine, plane, point, colours, window, a, pixel_mm, title))
    tiles = _grid(rows, [caption for *_, caption in subjects])
    rows_text = "axial, axial + labels, coronal, coronal + labels"
    title = f"{len(subjects)} subjects; rows: {rows_text}; window {window[0]:g}..{window[1]:g} HU"
    _stack([tiles, _legend(max(tiles.width, 600), names, colours, title)], path)


def write_comparison(
    image: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    affine: np.ndarray,
    names: Mapping[int, str],
    path: str | os.PathLike,
    caption: str | None = None,
    window: tuple[float, float] = (-160.0, 240.0),
    alpha: float = 0.45,
    pixel_mm: float | None = None,
) -> None:
    """Write one case's ground truth beside a prediction: rows axial and coronal; columns image, ground truth overlay,
    prediction overlay; slices through the centre of the reference labels, in radiological convention with
    orientation letters (module docstring), a colour legend of the organ names and an optional caption line.

    Args:
        image: (X, Y, Z) intensities (HU), in ``affine``'s voxel order.
        reference: (X, Y, Z) integer ground-truth labels, in ``affine``'s voxel order.
        prediction: (X, Y, Z) integer predicted labels, in ``affine``'s voxel order.
        affine: 4x4 voxel -> world (mm, RAS+) matrix, as nibabel gives it.
        names: label id -> organ name (0 = background is not drawn).
        path: output PNG.
        caption: a line written above the panels (e.g. the case id and its Dice); None: no caption.
        window: display window in HU (default: abdominal soft tissue).
        alpha: overlay opacity.
        pixel_mm: mm per displayed pixel (default: the smallest voxel spacing, or finer so that the volume's
            largest extent spans 256 pixels).
    """
    _check(image, affine, reference, prediction)
    centre = _centre(reference)
    centre = _centre(prediction) if centre is None else centre
    centre = np.array(image.shape, dtype=float) / 2.0 if centre is None else centre
    colours = label_colours(max(names) if names else 1)
    pixel_mm = pixel_mm or _default_mm(image.shape, affine)
    rows = [
        [
            _panel(image, labels, affine, plane, centre, colours, window, a, pixel_mm, plane)
            for labels, a in ((None, 0.0), (reference, alpha), (prediction, alpha))
        ]
        for plane in ("axial", "coronal")
    ]
    tiles = _grid(rows, ["image", "ground truth", "prediction"])
    legend = _legend(max(tiles.width, 460), names, colours, f"window {window[0]:g}..{window[1]:g} HU")
    parts = [tiles, legend]
    if caption:
        strip = Image.new("RGB", (tiles.width, _LINE + 6), "black")
        ImageDraw.Draw(strip).text((4, 3), caption, fill="white", font=_font(13))
        parts.insert(0, strip)
    _stack(parts, path)
