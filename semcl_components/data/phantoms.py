"""Deterministic synthetic multi-organ abdominal CT phantoms, written in the Medical Segmentation Decathlon layout.

Every workflow of the project runs on these phantoms on a fresh machine, with no download::

    python -m semcl_components.data.phantoms --out data/phantoms --num 24 --seed 0 --size 96 96 96 --preview

writes::

    data/phantoms/
        dataset.json          MSD metadata: name, modality, labels (organ names), numTraining, training list
        datalist.json         fixed low-label splits: pretrain pool, finetune_1/2/4/8 (nested), validation, test
        imagesTr/phantom_000.nii.gz   int16 Hounsfield units, (X, Y, Z), RAS+ affine, isotropic spacing
        labelsTr/phantom_000.nii.gz   uint8 organ labels 0..8 (names in dataset.json)
        preview.png           three orthogonal slices of the first subject with the label overlay (--preview)

Each subject varies in body size, organ position, size, orientation and shape (a smooth random deformation field),
draws a contrast phase and per-organ intensity offsets (so an organ's mean HU moves between subjects), and may lack
organs (the gallbladder in about a quarter of subjects). Organ boundaries carry partial-volume blending, organs carry
smooth texture, and the image carries blur and noise. The same arguments give byte-identical files.

The dataset is written into a hidden sibling folder and renamed into place only when complete, so an interrupted run
never leaves a folder that looks like a finished dataset; rerunning with the same arguments reuses a complete one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .anatomy import CONTRAST_PHASES, LABEL_NAMES, ORGANS, TISSUE_HU, Organ
from .datalists import make_low_label_splits

__all__ = ["PhantomSubject", "generate_phantom", "write_phantom_dataset", "main"]

GENERATOR_VERSION = 1
HU_MIN, HU_MAX = -1024, 3071


@dataclass
class PhantomSubject:
    """One generated subject.

    Attributes:
        image: int16 Hounsfield units, shape (X, Y, Z).
        label: uint8 organ labels, shape (X, Y, Z); names in ``anatomy.LABEL_NAMES``.
        phase: the contrast phase drawn for the subject.
        present: organ names present in the label map.
    """

    image: np.ndarray
    label: np.ndarray
    phase: str
    present: list[str] = field(default_factory=list)


class _Canvas:
    """Accumulates tissue intensities with partial-volume blending on a deformed normalised grid."""

    def __init__(self, size: Sequence[int], rng: np.random.Generator):
        self.size = tuple(int(s) for s in size)
        self.rng = rng
        axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in self.size]
        base = np.meshgrid(*axes, indexing="ij")
        displacement = [self.smooth_field(cells=4, amplitude=0.035) for _ in range(3)]
        self.coords = [b + d for b, d in zip(base, displacement)]
        # one voxel in normalised units, per axis: used to turn implicit distances into partial-volume fractions
        self.voxel = np.array([2.0 / max(n - 1, 1) for n in self.size], dtype=np.float32)
        self.image = np.full(self.size, TISSUE_HU["air"][0], dtype=np.float32)
        self.label = np.zeros(self.size, dtype=np.uint8)
        self.texture = [self.smooth_field(cells=max(n // 6 for n in self.size), amplitude=1.0) for _ in range(2)]

    def smooth_field(self, cells: int, amplitude: float) -> np.ndarray:
        """Random field with about ``cells`` independent values per axis, linearly upsampled, std ~ ``amplitude``."""
        low = self.rng.standard_normal((cells + 1,) * 3).astype(np.float32) * amplitude
        zoom = [n / (cells + 1) for n in self.size]
        return ndimage.zoom(low, zoom, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in self.size)]

    def paint(self, occupancy: np.ndarray, region: tuple[slice, ...], hu: np.ndarray | float, label: int = 0) -> None:
        """Blend ``hu`` into the image by the partial-volume ``occupancy`` (in [0, 1]) of ``region``."""
        view = self.image[region]
        view += (hu - view) * occupancy
        if label:
            self.label[region][occupancy >= 0.5] = label

    def occupancy(self, signed_distance: np.ndarray) -> np.ndarray:
        """Partial-volume fraction from a signed distance in voxels (negative inside)."""
        return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _rotation(rng: np.random.Generator, tilt_deg: float, jitter_deg: tuple[float, float, float]) -> np.ndarray:
    """3x3 rotation: the organ's tilt about z plus a random jitter about x, y and z (degrees, std)."""
    ax, ay, az = np.deg2rad(rng.normal(0.0, jitter_deg)) + np.deg2rad([0.0, 0.0, tilt_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def _bounding_region(canvas: _Canvas, centre: np.ndarray, radius: float) -> tuple[slice, ...] | None:
    """Voxel slices covering a cube of half-width ``radius`` (normalised units, plus deformation slack) around centre."""
    region = []
    for axis, n in enumerate(canvas.size):
        lo = int(np.floor((centre[axis] - radius - 0.15 + 1.0) / canvas.voxel[axis]))
        hi = int(np.ceil((centre[axis] + radius + 0.15 + 1.0) / canvas.voxel[axis])) + 1
        lo, hi = max(lo, 0), min(hi, n)
        if lo >= hi:
            return None
        region.append(slice(lo, hi))
    return tuple(region)


def _ellipsoid_distance(
    canvas: _Canvas,
    region: tuple[slice, ...],
    centre: np.ndarray,
    semi_axes: np.ndarray,
    rotation: np.ndarray,
    tube: bool,
) -> np.ndarray:
    """Approximate signed distance (voxels, negative inside) to a rotated ellipsoid (or a z-infinite elliptic tube)."""
    local = [c[region] - centre[i] for i, c in enumerate(canvas.coords)]
    # rotate the offsets into the organ's frame: u_j = sum_i R_ij p_i
    frame = [sum(rotation[i, j] * local[i] for i in range(3)) for j in range(3)]
    axes = 2 if tube else 3
    radius = np.sqrt(sum((frame[j] / semi_axes[j]) ** 2 for j in range(axes)))
    scale = float(np.min(semi_axes[:axes]) / np.mean(canvas.voxel))
    return (radius - 1.0) * scale


def _paint_body(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Body outline, subcutaneous fat, abdominal wall, visceral fat with bowel, spine and paraspinal muscles.

    Returns the boolean mask of the peritoneal cavity, where organs may be drawn.
    """
    everything = tuple(slice(0, n) for n in canvas.size)
    identity = np.eye(3, dtype=np.float32)
    body_axes = np.array([0.90, 0.70, 1.0], dtype=np.float32) * rng.uniform(0.88, 1.04, 3).astype(np.float32)
    fat = rng.uniform(0.04, 0.12)
    layers = (
        ("subcutaneous_fat", 0.0),
        ("muscle", fat),
        ("visceral_fat", fat + 0.045),
    )
    centre = np.array([0.0, 0.0, 0.0], dtype=np.float32)
    cavity = None
    for tissue, inset in layers:
        distance = _ellipsoid_distance(canvas, everything, centre, body_axes - inset, identity, tube=True)
        mean, texture = TISSUE_HU[tissue]
        canvas.paint(canvas.occupancy(distance), everything, mean + texture * canvas.texture[0])
        cavity = distance < 0
    bowel = np.clip(canvas.smooth_field(cells=6, amplitude=1.0), 0.0, None)
    mean, texture = TISSUE_HU["bowel"]
    canvas.paint(np.clip(bowel * 1.5, 0.0, 1.0) * cavity, everything, mean + texture * canvas.texture[1])
    spine_y = -body_axes[1] + 0.33
    for tissue, centre_xy, axes_xy in (
        ("muscle", (0.17, spine_y - 0.1), (0.12, 0.09)),
        ("muscle", (-0.17, spine_y - 0.1), (0.12, 0.09)),
        ("bone_cortex", (0.0, spine_y), (0.13, 0.11)),
        ("bone_marrow", (0.0, spine_y), (0.10, 0.085)),
        ("spinal_canal", (0.0, spine_y - 0.17), (0.045, 0.04)),
    ):
        part_centre = np.array([centre_xy[0], centre_xy[1], 0.0], dtype=np.float32)
        region = _bounding_region(canvas, part_centre, max(axes_xy))
        if region is None:
            continue
        region = region[:2] + (slice(0, canvas.size[2]),)
        semi = np.array([axes_xy[0], axes_xy[1], 1.0], dtype=np.float32)
        distance = _ellipsoid_distance(canvas, region, part_centre, semi, identity, tube=True)
        mean, texture = TISSUE_HU[tissue]
        canvas.paint(canvas.occupancy(distance), region, mean + texture * canvas.texture[1][region])
    return cavity


def _organ_hu(organ: Organ, phase: int, rng: np.random.Generator) -> float:
    """The subject's mean HU of an organ: the phase's value plus a per-subject offset (contrast timing, habitus)."""
    return float(organ.hu[phase] + rng.normal(0.0, 12.0))


def _paint_organ(
    canvas: _Canvas, organ: Organ, phase: int, scale: float, cavity: np.ndarray, rng: np.random.Generator
) -> bool:
    """Draw one organ with per-subject position, size, orientation and intensity; False if it fell outside the view."""
    centre = np.array(organ.centre, dtype=np.float32) + rng.normal(0.0, 0.03, 3).astype(np.float32)
    if organ.tube:
        centre[2] = 0.0
    semi_axes = np.array(organ.semi_axes, dtype=np.float32) * scale * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    jitter = (0.0, 0.0, 4.0) if organ.tube else (6.0, 6.0, 10.0)
    rotation = _rotation(rng, organ.tilt_deg, jitter)
    reach = float(np.max(semi_axes[:2] if organ.tube else semi_axes))
    region = _bounding_region(canvas, centre, reach)
    if region is None:
        return False
    if organ.tube:
        region = region[:2] + (slice(0, canvas.size[2]),)
    distance = _ellipsoid_distance(canvas, region, centre, semi_axes, rotation, organ.tube)
    occupancy = canvas.occupancy(distance) * cavity[region]
    if not np.any(occupancy >= 0.5):
        return False
    texture = canvas.texture[organ.label % 2][region] * organ.texture_hu
    canvas.paint(occupancy, region, _organ_hu(organ, phase, rng) + texture, label=organ.label)
    return True


def generate_phantom(size: Sequence[int] = (96, 96, 96), seed: int | Sequence[int] = 0) -> PhantomSubject:
    """Generate one subject.

    Args:
        size: (X, Y, Z) voxels. The anatomy fills the field of view whatever the size.
        seed: an int or a sequence of ints (e.g. ``(dataset_seed, subject_index)``) seeding numpy's PCG64.

    Returns:
        a :class:`PhantomSubject` with an int16 HU image and a uint8 label map, both of shape ``size``.
    """
    if len(size) != 3 or min(size) < 8:
        raise ValueError(f"size must be three integers >= 8, got {tuple(size)}.")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    canvas = _Canvas(size, rng)
    cavity = _paint_body(canvas, rng)
    phase = int(rng.integers(len(CONTRAST_PHASES)))
    scale = float(rng.uniform(0.9, 1.1))
    present = []
    for organ in ORGANS:
        has_organ = rng.random() < organ.presence
        if has_organ and _paint_organ(canvas, organ, phase, scale, cavity, rng):
            present.append(organ.name)
    # the scanner: point spread (blur) then quantum noise
    image = ndimage.gaussian_filter(canvas.image, sigma=0.6, mode="nearest")
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(8.0, 20.0))
    image = np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)
    return PhantomSubject(image=image, label=canvas.label, phase=CONTRAST_PHASES[phase], present=present)


def _affine(size: Sequence[int], spacing: float) -> np.ndarray:
    """RAS+ affine with isotropic ``spacing`` (mm) whose origin puts the volume's centre at (0, 0, 0)."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -0.5 * spacing * (np.asarray(size, dtype=float) - 1.0)
    return affine


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write NIfTI-1 gzip with a fixed gzip timestamp, so identical arrays give byte-identical files."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    if array.dtype == np.int16:
        image.header.set_slope_inter(1.0, 0.0)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as stream:
        stream.write(image.to_bytes())


def _dataset_json(
    num: int, seed: int, size: Sequence[int], spacing: float, cases: list[str], phases: list[str]
) -> dict:
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]
    return {
        "name": "SemCLAbdomenPhantom",
        "description": "Synthetic multi-organ abdominal CT phantoms (semcl_components.data.phantoms)",
        "reference": "generated; no real patient data",
        "licence": "Apache-2.0",
        "release": f"generator v{GENERATOR_VERSION}",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "numTraining": num,
        "numTest": 0,
        "training": training,
        "test": [],
        "generator": {
            "module": "semcl_components.data.phantoms",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "size": list(size),
            "spacing_mm": spacing,
            "contrast_phases": dict(zip(cases, phases)),
        },
    }


def _same_dataset(out: Path, num: int, seed: int, size: Sequence[int], spacing: float) -> bool:
    """True if ``out`` holds a complete dataset written with the same generator arguments."""
    try:
        meta = json.loads((out / "dataset.json").read_text())["generator"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    same = (meta.get("version"), meta.get("seed"), meta.get("size"), meta.get("spacing_mm")) == (
        GENERATOR_VERSION,
        seed,
        list(size),
        spacing,
    )
    files = [out / "datalist.json"] + [
        out / d / f"phantom_{i:03d}.nii.gz" for d in ("imagesTr", "labelsTr") for i in range(num)
    ]
    return same and len(meta.get("contrast_phases", {})) == num and all(f.is_file() for f in files)


def write_phantom_dataset(
    out: str | os.PathLike,
    num: int = 24,
    seed: int = 0,
    size: Sequence[int] = (96, 96, 96),
    spacing: float = 1.5,
    preview: bool = False,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """Write ``num`` phantoms in MSD layout to ``out`` and return the dataset summary (see module docstring).

    A complete dataset with the same arguments already at ``out`` is reused (only the preview is added if asked);
    an existing folder with other contents is an error unless ``overwrite``. Writing happens in a hidden sibling
    folder that is renamed into place when complete.
    """
    out = Path(out).absolute()
    if num < 4:
        raise ValueError(
            f"--num must be >= 4 (pretrain, finetune, validation and test need one subject each), got {num}."
        )
    if spacing <= 0:
        raise ValueError(f"--spacing must be > 0 mm, got {spacing}.")
    start = time.perf_counter()
    if _same_dataset(out, num, seed, size, spacing):
        if preview and not (out / "preview.png").is_file():
            _write_preview(out)
        summary = summarise_dataset(out)
        summary["reused"] = True
        return summary
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"{out} exists and does not hold a phantom dataset made with these arguments; "
            "pass --overwrite to replace it or choose another --out."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_cases(staging, num, seed, size, spacing, verbose)
        if preview:
            _write_preview(staging)
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = summarise_dataset(out)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["reused"] = False
    return summary


def _write_cases(folder: Path, num: int, seed: int, size: Sequence[int], spacing: float, verbose: bool) -> None:
    (folder / "imagesTr").mkdir()
    (folder / "labelsTr").mkdir()
    affine = _affine(size, spacing)
    cases, phases = [], []
    for index in range(num):
        case = f"phantom_{index:03d}"
        subject = generate_phantom(size, seed=(seed, index))
        _write_nifti(subject.image, affine, folder / "imagesTr" / f"{case}.nii.gz")
        _write_nifti(subject.label, affine, folder / "labelsTr" / f"{case}.nii.gz")
        cases.append(case)
        phases.append(subject.phase)
        if verbose:
            print(f"[phantoms] {index + 1}/{num} {case}: {subject.phase}, {len(subject.present)} organs", flush=True)
    dataset = _dataset_json(num, seed, size, spacing, cases, phases)
    splits = make_low_label_splits(dataset["training"], seed=seed)
    (folder / "datalist.json").write_text(json.dumps(splits, indent=2) + "\n")
    # dataset.json last: its presence (with the generator block) marks the dataset complete
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing an old ``out`` only after the new one is complete."""
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / out.name)
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out)


def _write_preview(folder: Path) -> None:
    from .preview import write_preview

    first = json.loads((folder / "dataset.json").read_text())["training"][0]
    image = nib.load(folder / first["image"]).get_fdata(dtype=np.float32)
    label = np.asarray(nib.load(folder / first["label"]).dataobj, dtype=np.uint8)
    write_preview(image, label, LABEL_NAMES, folder / "preview.png")


def summarise_dataset(folder: str | os.PathLike) -> dict:
    """Per-organ presence and mean HU over a written dataset, and the split sizes."""
    folder = Path(folder)
    dataset = json.loads((folder / "dataset.json").read_text())
    splits = json.loads((folder / "datalist.json").read_text())
    names = {int(k): v for k, v in dataset["labels"].items() if int(k) > 0}
    present = dict.fromkeys(names.values(), 0)
    hu_sum = dict.fromkeys(names.values(), 0.0)
    for item in dataset["training"]:
        image = np.asarray(nib.load(folder / item["image"]).dataobj, dtype=np.float32)
        label = np.asarray(nib.load(folder / item["label"]).dataobj)
        for k, name in names.items():
            inside = label == k
            if inside.any():
                present[name] += 1
                hu_sum[name] += float(image[inside].mean())
    organs = {
        n: {"present": present[n], "mean_hu": round(hu_sum[n] / present[n], 1) if present[n] else None}
        for n in names.values()
    }
    return {
        "folder": str(folder),
        "num_subjects": dataset["numTraining"],
        "size": dataset["generator"]["size"],
        "spacing_mm": dataset["generator"]["spacing_mm"],
        "organs": organs,
        "splits": {k: len(v) for k, v in splits.items()},
        "preview": str(folder / "preview.png") if (folder / "preview.png").is_file() else None,
    }


def format_summary(summary: dict) -> str:
    """Human-readable table of :func:`summarise_dataset`'s result."""
    lines = [
        f"phantom dataset: {summary['folder']}",
        f"  subjects: {summary['num_subjects']}  size: {summary['size']}  spacing: {summary['spacing_mm']} mm"
        + (f"  written in {summary['seconds']} s" if "seconds" in summary else "")
        + ("  (reused existing)" if summary.get("reused") else ""),
        f"  {'organ':<14}{'present':>8}{'mean HU':>9}",
    ]
    for name, stats in summary["organs"].items():
        hu = "-" if stats["mean_hu"] is None else f"{stats['mean_hu']:.1f}"
        lines.append(f"  {name:<14}{stats['present']:>8}{hu:>9}")
    lines.append("  splits: " + ", ".join(f"{k}={v}" for k, v in summary["splits"].items()))
    if summary.get("preview"):
        lines.append(f"  preview: {summary['preview']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m semcl_components.data.phantoms",
        description="Write deterministic multi-organ abdominal CT phantoms in the MSD layout.",
    )
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--num", type=int, default=24, help="number of subjects (>= 4; default 24)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument(
        "--size", type=int, nargs=3, default=(96, 96, 96), metavar=("X", "Y", "Z"), help="voxels (default 96 96 96)"
    )
    parser.add_argument("--spacing", type=float, default=1.5, help="isotropic voxel spacing in mm (default 1.5)")
    parser.add_argument("--preview", action="store_true", help="also write preview.png of the first subject")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder with other contents")
    parser.add_argument("--quiet", action="store_true", help="no per-subject progress lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad arguments or unwritable output)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        summary = write_phantom_dataset(
            args.out, args.num, args.seed, tuple(args.size), args.spacing, args.preview, args.overwrite, not args.quiet
        )
    except ValueError as error:
        parser.print_usage(sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(
            f"error: cannot write the dataset to {args.out}: {error.strerror or error} ({error.filename or args.out})",
            file=sys.stderr,
        )
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
