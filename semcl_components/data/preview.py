"""PNG previews of CT volumes with their label overlays.

:func:`write_preview`: three orthogonal slices of one subject. :func:`write_cohort_preview`: several subjects side by
side (axial and coronal slices, each without and with the label overlay) so the variability between subjects shows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["label_colours", "write_cohort_preview", "write_preview"]


def label_colours(num_labels: int) -> np.ndarray:
    """Distinct RGB colours (uint8, shape (num_labels + 1, 3)); row 0 (background) is black."""
    hues = np.linspace(0.0, 1.0, num_labels, endpoint=False)
    # HSV -> RGB with full saturation and value
    k = (np.array([5.0, 3.0, 1.0])[None] + hues[:, None] * 6.0) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.concatenate([np.zeros((1, 3)), rgb]).__mul__(255).astype(np.uint8)


def _panel(
    image: np.ndarray, label: np.ndarray, colours: np.ndarray, window: tuple[float, float], alpha: float
) -> np.ndarray:
    """One slice (2D, x by y) -> RGB uint8, displayed with the first array axis horizontal and the second upwards."""
    low, high = window
    grey = np.clip((image - low) / (high - low), 0.0, 1.0)[..., None] * 255.0
    rgb = np.repeat(grey, 3, axis=-1)
    overlay = colours[np.clip(label, 0, len(colours) - 1)].astype(np.float32)
    inside = (label > 0)[..., None]
    rgb = np.where(inside, (1.0 - alpha) * rgb + alpha * overlay, rgb)
    return np.flipud(rgb.transpose(1, 0, 2)).astype(np.uint8)


def write_preview(
    image: np.ndarray,
    label: np.ndarray,
    names: Mapping[int, str],
    path: str | os.PathLike,
    window: tuple[float, float] = (-160.0, 240.0),
    alpha: float = 0.45,
    zoom: int = 2,
) -> None:
    """Write axial, coronal and sagittal slices through the label's centre of mass, with a colour legend.

    Args:
        image: (X, Y, Z) intensities (HU).
        label: (X, Y, Z) integer labels.
        names: label id -> organ name (0 = background is not drawn).
        path: output PNG.
        window: display window in HU (default: abdominal soft tissue).
        alpha: overlay opacity.
        zoom: integer upscaling of the panels.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(f"image and label must be 3D arrays of one shape, got {image.shape} and {label.shape}.")
    foreground = np.argwhere(label > 0)
    centre = foreground.mean(0).round().astype(int) if len(foreground) else np.array(image.shape) // 2
    colours = label_colours(max(names) if names else 1)
    cx, cy, cz = centre
    panels = [
        _panel(image[:, :, cz], label[:, :, cz], colours, window, alpha),  # axial: x right, y up
        _panel(image[:, cy, :], label[:, cy, :], colours, window, alpha),  # coronal: x right, z up
        _panel(image[cx, :, :], label[cx, :, :], colours, window, alpha),  # sagittal: y right, z up
    ]
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    strip = np.concatenate(padded, axis=1).repeat(zoom, axis=0).repeat(zoom, axis=1)
    legend_rows = [(k, v) for k, v in sorted(names.items()) if k > 0]
    canvas = Image.new("RGB", (strip.shape[1], strip.shape[0] + 14 * (len(legend_rows) + 1) + 4), "black")
    canvas.paste(Image.fromarray(strip), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = strip.shape[0] + 4
    draw.text(
        (4, y), f"axial z={cz}, coronal y={cy}, sagittal x={cx}; window {window[0]:g}..{window[1]:g} HU", fill="white"
    )
    for k, name in legend_rows:
        y += 14
        draw.rectangle((4, y + 2, 14, y + 11), fill=tuple(int(c) for c in colours[k]))
        draw.text((20, y), f"{k}: {name}", fill="white")
    canvas.save(path)


def _legend(width: int, names: Mapping[int, str], colours: np.ndarray, title: str) -> Image.Image:
    """A strip with ``title`` and one coloured swatch per foreground label, four per row."""
    rows = [(k, v) for k, v in sorted(names.items()) if k > 0]
    per_row = 4
    legend = Image.new("RGB", (width, 18 + 14 * ((len(rows) + per_row - 1) // per_row) + 4), "black")
    draw = ImageDraw.Draw(legend)
    draw.text((4, 2), title, fill="white")
    for i, (k, name) in enumerate(rows):
        x, y = 4 + (i % per_row) * 150, 18 + 14 * (i // per_row)
        draw.rectangle((x, y + 2, x + 10, y + 11), fill=tuple(int(c) for c in colours[k]))
        draw.text((x + 16, y), f"{k}: {name}", fill="white")
    return legend


def write_cohort_preview(
    subjects: Sequence[tuple[np.ndarray, np.ndarray, str]],
    spacing: Sequence[float],
    names: Mapping[int, str],
    path: str | os.PathLike,
    window: tuple[float, float] = (-160.0, 240.0),
    alpha: float = 0.45,
    pixel_mm: float = 2.0,
) -> None:
    """Write several subjects side by side: rows axial, axial + labels, coronal, coronal + labels.

    Args:
        subjects: (image (X, Y, Z) HU, label (X, Y, Z) integer, caption) per subject, all of one shape.
        spacing: (x, y, z) voxel spacing in mm: panels are resampled to ``pixel_mm`` per pixel, so anisotropic
            volumes show their true proportions.
        names: label id -> organ name (0 = background is not drawn).
        path: output PNG.
        window: display window in HU.
        alpha: overlay opacity.
        pixel_mm: mm per displayed pixel.

    The axial slice passes through the centre of the kidneys' and pancreas' labels (or of all labels), the coronal
    slice through the centre of all labels, so each column shows the same anatomical level of its subject.
    """
    if not subjects:
        raise ValueError("write_cohort_preview needs at least one subject.")
    colours = label_colours(max(names) if names else 1)
    columns = []
    for image, label, caption in subjects:
        if image.shape != label.shape or image.ndim != 3:
            raise ValueError(f"image and label must be 3D arrays of one shape, got {image.shape} and {label.shape}.")
        middle = np.argwhere(np.isin(label, [2, 3, 8]))
        everything = np.argwhere(label > 0)
        centre = (everything.mean(0) if len(everything) else np.array(image.shape) / 2).round().astype(int)
        cz = int(middle[:, 2].mean().round()) if len(middle) else int(centre[2])
        cells = []
        for grey, lab, (sx, sy) in (
            (image[:, :, cz], label[:, :, cz], (spacing[0], spacing[1])),
            (image[:, centre[1], :], label[:, centre[1], :], (spacing[0], spacing[2])),
        ):
            size = (max(1, round(grey.shape[0] * sx / pixel_mm)), max(1, round(grey.shape[1] * sy / pixel_mm)))
            for a in (0.0, alpha):
                panel = Image.fromarray(_panel(grey, lab, colours, window, a)).resize(size, Image.NEAREST)
                cells.append(panel)
        width = max(c.width for c in cells)
        column = Image.new("RGB", (width, sum(c.height + 2 for c in cells) + 14), "black")
        ImageDraw.Draw(column).text((2, 1), caption, fill="white")
        y = 14
        for cell in cells:
            column.paste(cell, (0, y))
            y += cell.height + 2
        columns.append(column)
    width = sum(c.width + 4 for c in columns)
    rows = "axial, axial + labels, coronal, coronal + labels"
    title = f"{len(columns)} subjects; rows: {rows}; window {window[0]:g}..{window[1]:g} HU"
    legend = _legend(max(width, 600), names, colours, title)
    canvas = Image.new("RGB", (max(width, legend.width), max(c.height for c in columns) + legend.height), "black")
    x = 0
    for column in columns:
        canvas.paste(column, (x, 0))
        x += column.width + 4
    canvas.paste(legend, (0, canvas.height - legend.height))
    canvas.save(path, optimize=True)
