"""Input checks: every image and label a workflow reads is checked before use, and a bad one stops the run by name.

A medical-imaging user must never get a silently wrong model or segmentation. These transforms sit at the start of
every workflow's pipeline (file checks before ``LoadImaged``, the others right after it) and raise ``ValueError``
naming the file and the problem:

- :class:`CheckFile` / :class:`CheckFiled`: the file exists and, for NIfTI, decodes completely with finite voxels (ITK
  zero-fills a truncated ``.nii.gz`` and reads NaN as 0; other readers fail deep inside with a bare ``EOFError``);
- :class:`CheckImage` / :class:`CheckImaged`: channel count, number of spatial dimensions, finite values;
- :class:`CheckLabel` / :class:`CheckLabeld`: integer values that are all known classes;
- :class:`CheckGeometryd`: image and label on the same grid (shape and affine within a tolerance);
- :class:`CheckOrthogonalAxes` / :class:`CheckOrthogonalAxesd`: voxel axes at right angles (no shear), so that an
  output written in the image's geometry keeps its affine.

One check warns instead of stopping: :class:`CheckTrainingDomain` / :class:`CheckTrainingDomaind` log a WARNING for an
image whose intensities or spacing lie outside what the model was trained on (not CT in Hounsfield units, all air, a
voxel size far from ``pixdim``); it is segmented all the same.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

__all__ = [
    "CheckFile",
    "CheckFiled",
    "CheckGeometryd",
    "CheckImage",
    "CheckImaged",
    "CheckLabel",
    "CheckLabeld",
    "CheckOrthogonalAxes",
    "CheckOrthogonalAxesd",
    "CheckTrainingDomain",
    "CheckTrainingDomaind",
    "grid_difference",
    "incomplete_nifti",
    "source_name",
]

_SHOWN_VALUES = 10
_CHUNK = 1 << 20
_SAMPLE = 1 << 20  # voxels the domain check's percentiles are taken from

logger = logging.getLogger(__name__)


def source_name(data: Any, default: str = "input") -> str:
    """The file an array was read from (``meta["filename_or_obj"]`` of a ``MetaTensor``), else ``default``."""
    meta = getattr(data, "meta", None) or {}
    name = meta.get("filename_or_obj")
    if isinstance(name, (list, tuple)):
        name = ", ".join(map(str, name))
    return str(name) if name else default


def _nifti_layout(path: Path) -> tuple[int, int, np.dtype] | None:
    """``(data offset, voxel data bytes, on-disk dtype)`` of a NIfTI file; None if its header is unreadable."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception:  # an unreadable header is the reader's to report, with its own message
        return None
    dtype = image.header.get_data_dtype()
    voxels = int(np.prod(image.header.get_data_shape(), dtype=np.int64))
    return int(image.dataobj.offset), voxels * dtype.itemsize, dtype


def _scan_voxels(path: Path, offset: int, dtype: np.dtype) -> tuple[int, int]:
    """Read a NIfTI file (gzip or not) to its end: ``(bytes of content, non-finite voxel values)``.

    Raises ``EOFError``/``OSError``/``zlib.error`` when a gzip stream is cut short or damaged.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    size, non_finite, pending = 0, 0, b""
    floating = dtype.kind in "fc"
    with opener(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            start = max(0, offset - size)
            size += len(chunk)
            if not floating or start >= len(chunk):
                continue
            data = pending + chunk[start:]
            usable = len(data) - len(data) % dtype.itemsize
            non_finite += int(np.count_nonzero(~np.isfinite(np.frombuffer(data[:usable], dtype=dtype))))
            pending = data[usable:]
    return size, non_finite


def _nifti_content(path: Path, layout: tuple[int, int, np.dtype]) -> tuple[str | None, int]:
    """``(what is wrong with the voxel data or None, non-finite voxel values)`` of a NIfTI file of known layout."""
    offset, data_bytes, dtype = layout
    try:
        size, non_finite = _scan_voxels(path, offset, dtype)
    except (EOFError, OSError, zlib.error) as error:
        return f"the file is damaged or cut short ({type(error).__name__}: {error})", 0
    if size < offset + data_bytes:
        return (
            f"the file is cut short: it holds {size} bytes of header and image data, its header needs "
            f"{offset + data_bytes}"
        ), non_finite
    return None, non_finite


def incomplete_nifti(path: str | os.PathLike) -> str | None:
    """Why a NIfTI file does not hold all the voxel data its header announces, or ``None`` when it does.

    Reads the file once to its end; e.g. ``"the file is cut short: it holds 300 bytes ..."`` for a truncated file,
    or an unreadable header for an empty one. Used to verify a file just written (ITK does not report a failed write).
    """
    layout = _nifti_layout(Path(path))
    if layout is None:
        return "the header is unreadable (an empty or damaged file)"
    return _nifti_content(Path(path), layout)[0]


class _KeyCheck(MapTransform):
    """Dictionary twin base: applies the array check ``self.checker`` to the value of every key; data pass unchanged."""

    checker: Transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.checker(d[key])
        return d


class CheckFile(Transform):
    """Check that a path exists and, for NIfTI (``.nii``, ``.nii.gz``), that all its voxel data is there and finite.

    ``__call__(path)`` returns ``path`` unchanged or raises. The file is read once to its end: ITK would zero-fill a
    truncated file and read NaN voxels as 0, so neither can be seen after loading. Other formats (DICOM folders,
    NRRD...) are only checked for existence; their readers report damage themselves.

    Raises:
        FileNotFoundError: the path is empty or does not exist. An empty path would name the working folder (``.``),
            which a DICOM reader would then try to read; MONAI Label passes one for an image id that is not in its
            studies folder.
        ValueError: a NIfTI file is truncated, its gzip stream is damaged, or a voxel is NaN or infinite (the
            message names the file).
    """

    def __call__(self, path: str | os.PathLike) -> str | os.PathLike:  # type: ignore[override]
        if not os.fspath(path).strip():
            raise FileNotFoundError(
                "no input file: the path is empty (in MONAI Label: the image id is not one of the studies; "
                "GET /datastore/?output=all lists them)."
            )
        file = Path(path)
        if not file.exists():
            raise FileNotFoundError(f"{file}: no such file or folder.")
        name = file.name.lower()
        if not (file.is_file() and name.endswith((".nii", ".nii.gz"))):
            return path
        layout = _nifti_layout(file)
        if layout is None:
            return path  # an unreadable header is the reader's to report, with its own message
        problem, non_finite = _nifti_content(file, layout)
        if problem:
            raise ValueError(f"{file}: {problem}.")
        if non_finite:
            raise ValueError(f"{file}: {non_finite} voxels are not finite (NaN or infinite).")
        return path


class CheckFiled(_KeyCheck):
    """Dictionary twin of :class:`CheckFile`: checks the paths at ``keys`` (before ``LoadImaged``)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckFile()


class CheckImage(Transform):
    """Check a channel-first image ``(C, *spatial)``: channel count, spatial dimensions and finite values.

    Args:
        num_channels: the channels the network takes (``None``: any).
        spatial_dims: the spatial dimensions the network takes (3 for a 3D bundle).

    Raises:
        ValueError: naming the source file (from the ``MetaTensor``'s meta data), what was expected and what came.
    """

    def __init__(self, num_channels: int | None = None, spatial_dims: int = 3) -> None:
        self.num_channels = num_channels
        self.spatial_dims = spatial_dims

    def __call__(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        source = source_name(image, "image")
        shape = tuple(image.shape)
        if len(shape) - 1 != self.spatial_dims:
            raise ValueError(
                f"{source}: the network takes {self.spatial_dims}D images, got channel-first shape {shape} "
                f"({len(shape) - 1} spatial dimensions)."
            )
        if self.num_channels is not None and shape[0] != self.num_channels:
            raise ValueError(
                f"{source}: the network takes {self.num_channels}-channel images, got {shape[0]} channels "
                f"(channel-first shape {shape}); see network_data_format.inputs.image in metadata.json."
            )
        values = convert_to_tensor(image, track_meta=False)
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ValueError(f"{source}: {bad} of {values.numel()} voxels are not finite (NaN or infinite).")
        return image


class CheckImaged(_KeyCheck):
    """Dictionary twin of :class:`CheckImage`."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        num_channels: int | None = None,
        spatial_dims: int = 3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckImage(num_channels, spatial_dims)


class CheckLabel(Transform):
    """Check a label map ``(1, *spatial)``: integer values, each one of ``0 .. num_classes - 1``.

    Args:
        num_classes: number of classes including background (``len(class_names) + 1``).
        require_foreground: also refuse a label map of background only (an empty annotation: nothing to learn from
            and no foreground to crop around when training).

    Raises:
        ValueError: naming the source file and the offending values.
    """

    def __init__(self, num_classes: int, require_foreground: bool = False) -> None:
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (background and one class), got {num_classes!r}.")
        self.num_classes = int(num_classes)
        self.require_foreground = bool(require_foreground)

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        source = source_name(label, "label")
        if label.shape[0] != 1:
            raise ValueError(f"{source}: a label map has one channel, got channel-first shape {tuple(label.shape)}.")
        values = torch.unique(convert_to_tensor(label, track_meta=False))
        non_integer = values[values != torch.round(values)] if values.is_floating_point() else values[:0]
        if non_integer.numel():  # NaN != NaN, so NaN is caught here too
            raise ValueError(f"{source}: label values must be integers, got {_shown(non_integer)}.")
        unknown = values[(values < 0) | (values >= self.num_classes)]
        if unknown.numel():
            raise ValueError(
                f"{source}: label values {_shown(unknown)} are not classes 0..{self.num_classes - 1}: the label map "
                f"holds more classes than class_names lists ({self.num_classes - 1} foreground classes)."
            )
        if self.require_foreground and not bool((values != 0).any()):
            raise ValueError(
                f"{source}: the label map holds background only (no organ is labelled), so it cannot train the model; "
                "label at least one organ or leave this image out."
            )
        return label


class CheckLabeld(_KeyCheck):
    """Dictionary twin of :class:`CheckLabel`."""

    def __init__(
        self,
        keys: KeysCollection = "label",
        num_classes: int = 2,
        require_foreground: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckLabel(num_classes, require_foreground)


def grid_difference(shapes: Sequence[Sequence[int]], affines: Sequence[Any], tolerance: float) -> str | None:
    """How two volumes' voxel grids differ (``differ in shape: (..) vs (..)`` or ``differ in position or orientation
    (affines differ by up to d, tolerance t)``), or ``None`` when they are one grid. An affine that is ``None`` is not
    compared."""
    first_shape, second_shape = (tuple(int(v) for v in shape) for shape in shapes)
    if first_shape != second_shape:
        return f"differ in shape: {first_shape} vs {second_shape}"
    if any(a is None for a in affines):
        return None
    first, second = (convert_to_tensor(a, track_meta=False).double() for a in affines)
    difference = float((first - second).abs().max())
    if difference > tolerance:
        return f"differ in position or orientation (affines differ by up to {difference:.3g}, tolerance {tolerance:g})"
    return None


class CheckGeometryd(MapTransform):
    """Check that an image and its label lie on one grid: the same spatial shape and affine (within a tolerance).

    A label of another shape or shifted in space would otherwise train or evaluate against the wrong voxels without
    a word. Run it right after loading, before any resampling.

    Args:
        keys: the image key and the label key (two keys).
        affine_tolerance: largest accepted difference of any affine entry (mm; rotation/scale entries alike).
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), affine_tolerance: float = 1e-3) -> None:
        super().__init__(keys)
        if len(self.keys) != 2:
            raise ValueError(f"CheckGeometryd compares two keys (image, label), got {self.keys}.")
        self.affine_tolerance = float(affine_tolerance)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, label = (d[key] for key in self.keys)
        problem = grid_difference(
            (image.shape[1:], label.shape[1:]),
            (getattr(image, "affine", None), getattr(label, "affine", None)),
            self.affine_tolerance,
        )
        if problem:
            raise ValueError(
                f"image {source_name(image)} and label {source_name(label)} {problem}; a label must be on its "
                "image's voxel grid."
            )
        return d


class CheckOrthogonalAxes(Transform):
    """Check that an image's voxel axes are at right angles: its affine holds no shear.

    ITK, which reads and writes the bundle's images, keeps a voxel grid as spacing and an orthonormal direction
    matrix: a sheared affine (a gantry-tilted CT stored without correction, a resampling tool's output) is coerced to
    the nearest orthogonal one when the segmentation is written, which would place the output up to millimetres away
    from the image it belongs to. Such an image is refused instead, before any work. Rotated, flipped and
    anisotropic grids pass.

    Args:
        tolerance: largest accepted cosine between two voxel axes (1e-4 is 0.006 degrees; header rounding is ~1e-7).

    Raises:
        ValueError: naming the source file, the angle between its axes and the way out.
    """

    def __init__(self, tolerance: float = 1e-4) -> None:
        self.tolerance = float(tolerance)

    def __call__(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        affine = getattr(image, "affine", None)
        if affine is None:
            return image
        axes = convert_to_tensor(affine, track_meta=False).double()[:-1, :-1]
        directions = axes / axes.norm(dim=0, keepdim=True)
        cosines = (directions.T @ directions - torch.eye(len(directions), dtype=torch.float64)).abs()
        worst = float(cosines.max())
        if worst > self.tolerance:
            degrees = 90.0 - float(torch.rad2deg(torch.arccos(torch.tensor(min(worst, 1.0)))))
            raise ValueError(
                f"{source_name(image, 'image')}: its voxel axes are not orthogonal (sheared by {degrees:.3g} degrees; "
                f"affine {np.round(convert_to_tensor(affine, track_meta=False).numpy(), 4).tolist()}), and the "
                "segmentation's file could not keep that geometry: ITK would write it at right angles, displaced "
                "from the image. Resample the image onto an orthogonal grid first (e.g. a tilt-corrected conversion "
                "with dcm2niix, or any resampling to the image's own spacing) and segment that."
            )
        return image


class CheckOrthogonalAxesd(_KeyCheck):
    """Dictionary twin of :class:`CheckOrthogonalAxes`."""

    def __init__(self, keys: KeysCollection = "image", tolerance: float = 1e-4, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckOrthogonalAxes(tolerance)


class CheckTrainingDomain(Transform):
    """Warn, one logged line per image, where an image does not look like the CT the model was trained on.

    The bundle scales ``[hu_min, hu_max]`` Hounsfield units to ``[0, 1]`` and resamples to ``pixdim``: an MRI, an 8-bit
    export, CT stored with a +1024 offset (no rescale intercept), an image of air only or a header with a 0.05 mm voxel
    goes through the same steps and comes out as a plausible-looking but meaningless segmentation. The check looks at
    statistics of the loaded array (minimum, maximum, median of a subsample, the fraction inside the window) and the
    voxel size of its affine, and logs a WARNING naming the file and what it saw. It never refuses: a cropped or
    unusual CT may trip it, and the user decides.

    What it flags:
        - no voxel below ``air_below`` HU (CT in HU has air near -1000 around and inside the body; MRI, 8-bit and
          offset data start near 0);
        - less than ``min_window_fraction`` of the voxels inside ``[hu_min, hu_max]`` (soft tissue: an image of air or
          of values far outside the window);
        - a voxel size under ``min(pixdim) / max_spacing_ratio`` or over ``max(pixdim) * max_spacing_ratio`` mm.

    Args:
        hu_min: the intensity window's lower end (configs/common.yaml ``hu_min``).
        hu_max: its upper end (``hu_max``).
        pixdim: the spacing the network works at, mm (``pixdim``; one number or one per axis).
        air_below: an intensity at least one voxel of a CT in HU lies below.
        min_window_fraction: the smallest fraction of voxels inside the window that passes.
        max_spacing_ratio: how far a voxel size may be from ``pixdim`` (a factor either way).
    """

    def __init__(
        self,
        hu_min: float,
        hu_max: float,
        pixdim: float | Sequence[float],
        air_below: float = -500.0,
        min_window_fraction: float = 0.01,
        max_spacing_ratio: float = 10.0,
    ) -> None:
        self.hu_min, self.hu_max = float(hu_min), float(hu_max)
        spacing = [float(v) for v in (pixdim if isinstance(pixdim, Sequence) else [pixdim])]
        self.pixdim = spacing
        self.spacing_range = (min(spacing) / max_spacing_ratio, max(spacing) * max_spacing_ratio)
        self.air_below = float(air_below)
        self.min_window_fraction = float(min_window_fraction)

    def findings(self, image: NdarrayOrTensor) -> list[str]:
        """What does not fit, one phrase each (empty when the image looks like the training data)."""
        values = convert_to_tensor(image, track_meta=False).float().flatten()
        found: list[str] = []
        if values.numel():
            low, high = float(values.min()), float(values.max())
            sample = values[:: max(1, values.numel() // _SAMPLE)]
            median = float(sample.median())
            seen = f"values {low:g} to {high:g}, median {median:g}"
            if low > self.air_below:
                kind = "; an 8-bit image?" if low >= 0 and high <= 255 else ""
                found.append(
                    f"no voxel below {self.air_below:g} ({seen}{kind}): CT has air at -1000 HU, while MRI, 8-bit "
                    "exports and CT stored without its -1024 rescale intercept start near 0"
                )
            inside = float(((values >= self.hu_min) & (values <= self.hu_max)).float().mean())
            if inside < self.min_window_fraction:
                found.append(f"{inside:.2%} of the voxels inside the window ({seen}): an image of air only, or not CT")
        affine = getattr(image, "affine", None)
        if affine is not None:
            axes = convert_to_tensor(affine, track_meta=False).double()[:-1, :-1]
            spacing = [float(v) for v in axes.norm(dim=0)]
            lowest, highest = self.spacing_range
            if any(not lowest <= v <= highest for v in spacing):
                found.append(
                    f"voxel size {' x '.join(f'{v:.3g}' for v in spacing)} mm (outside {lowest:.3g}-{highest:.3g} mm: "
                    "not a CT's, or the header's units are wrong)"
                )
        return found

    def __call__(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        found = self.findings(image)
        if found:
            logger.warning(
                f"{source_name(image, 'image')}: unlike the model's training data (CT in Hounsfield units, window "
                f"[{self.hu_min:g}, {self.hu_max:g}] HU, {' x '.join(f'{v:g}' for v in self.pixdim)} mm voxels): "
                f"{'; '.join(found)}. Segmented all the same: check the result."
            )
        return image


class CheckTrainingDomaind(_KeyCheck):
    """Dictionary twin of :class:`CheckTrainingDomain` (run it right after loading, before resampling)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        hu_min: float = -175.0,
        hu_max: float = 250.0,
        pixdim: float | Sequence[float] = 1.5,
        air_below: float = -500.0,
        min_window_fraction: float = 0.01,
        max_spacing_ratio: float = 10.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckTrainingDomain(hu_min, hu_max, pixdim, air_below, min_window_fraction, max_spacing_ratio)


def _shown(values: torch.Tensor) -> str:
    shown = [int(v) if float(v).is_integer() else float(v) for v in values[:_SHOWN_VALUES].tolist()]
    more = values.numel() - len(shown)
    return f"{shown}" + (f" (and {more} more)" if more > 0 else "")
