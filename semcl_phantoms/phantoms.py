"""Deterministic synthetic multi-organ abdominal CT phantoms, written in the Medical Segmentation Decathlon layout.

Every workflow of the project runs on these phantoms on a fresh machine, with no download::

    python -m semcl_phantoms.phantoms --out data/phantoms --num 24 --seed 0 --size 96 96 96 --preview
    python -m semcl_phantoms.phantoms --out data/realistic --preset realistic --size 64 64 48 --preview

writes::

    data/phantoms/
        dataset.json          MSD metadata: name, modality, labels (organ names), numTraining, training list
        datalist.json         fixed low-label splits: pretrain pool, finetune_1/2/4/8 (nested), validation, test
        imagesTr/phantom_000.nii.gz   int16 Hounsfield units, (X, Y, Z), RAS+ affine, the preset's spacing
        labelsTr/phantom_000.nii.gz   uint8 organ labels 0..8 (names in dataset.json)
        preview.png           --preview: three slices of the first subject (simple) or six subjects (realistic)

Two presets (``--preset``; the choice is recorded in ``dataset.json``):

- ``simple`` (default): the first generator (:mod:`.simple_phantom`), kept byte for byte so earlier results stay
  reproducible: ellipsoid organs at near-fixed positions filling the field of view, three discrete contrast phases,
  isotropic ``--spacing`` (1.5 mm by default) that does not match the anatomy's size.
- ``realistic`` (:mod:`.realistic_phantom`): anatomy, habitus, organ shapes, gut gas, distractor structures and
  contrast timing varying like patients', at a physical scale: the spacing is the preset's field of view (360 x 360 x
  270 mm) divided by ``--size``. Each case's phase bucket is recorded in every ``dataset.json`` and datalist entry
  (``contrast_phase``), its contrast time in ``dataset.json``'s ``generator.contrast_times_s`` (null: native); the
  preview shows six subjects side by side.
  Parameters, sources and the testbed's difficulty criteria: ``docs/PHANTOMS.md``.

The dataset is written into a hidden sibling folder and renamed into place only when complete, so an interrupted run
never leaves a folder that looks like a finished dataset; rerunning with the same arguments reuses a complete one.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .anatomy import LABEL_NAMES
from .datalists import make_low_label_splits
from .phantom_subject import PhantomSubject
from .realistic_phantom import generate_realistic_phantom
from .realistic_preset import REALISTIC
from .simple_phantom import generate_simple_phantom

__all__ = [
    "PHANTOM_SETS",
    "PRESETS",
    "PhantomSet",
    "PhantomSubject",
    "generate_phantom",
    "preset_fingerprint",
    "write_phantom_dataset",
    "write_phantom_set",
    "main",
]

GENERATOR_VERSION = 1
PRESETS: tuple[str, ...] = ("simple", "realistic")
SIMPLE_SPACING_MM = 1.5  # the simple preset's isotropic spacing: the bundle's default pixdim, so no resampling


@dataclass(frozen=True)
class PhantomSet:
    """How many phantoms of which size a use of the embedded data writes (``write_phantom_set``)."""

    num: int
    size: tuple[int, int, int]
    seed: int = 0
    preset: str = "simple"


#: The phantom datasets the project writes, by use; the benchmark's sizes carry their own (semcl_benchmark).
PHANTOM_SETS: dict[str, PhantomSet] = {
    "bundle": PhantomSet(24, (96, 96, 96)),  # a bundle workflow's default dataset_dir (<bundle>/data/phantoms)
    "export": PhantomSet(16, (64, 64, 64)),  # what the model-zoo export trains its shipped weights on
    "annotation": PhantomSet(4, (64, 64, 64)),  # the MONAI Label helper's studies when none are given
    "tests": PhantomSet(8, (32, 32, 32)),  # the test suite's bundle runs
}


def write_phantom_set(out: str | os.PathLike, name: str, **kwargs) -> dict:
    """``write_phantom_dataset`` with the count, size, seed and preset of ``PHANTOM_SETS[name]``.

    ``kwargs`` go to :func:`write_phantom_dataset` (``preview``, ``verbose``, ``overwrite``).
    """
    if name not in PHANTOM_SETS:
        raise ValueError(f"phantom set must be one of {sorted(PHANTOM_SETS)}, got {name!r}.")
    chosen = PHANTOM_SETS[name]
    return write_phantom_dataset(
        out, num=chosen.num, seed=chosen.seed, size=chosen.size, preset=chosen.preset, **kwargs
    )


def generate_phantom(
    size: Sequence[int] = (96, 96, 96), seed: int | Sequence[int] = 0, preset: str = "simple"
) -> PhantomSubject:
    """Generate one subject of ``preset`` (``simple`` or ``realistic``) with (X, Y, Z) ``size`` voxels.

    ``seed`` is an int or a sequence of ints (e.g. ``(dataset_seed, subject_index)``); the same arguments give the
    same arrays. See :func:`.simple_phantom.generate_simple_phantom` and
    :func:`.realistic_phantom.generate_realistic_phantom`.
    """
    if preset == "simple":
        return generate_simple_phantom(size, seed)
    if preset == "realistic":
        return generate_realistic_phantom(size, seed)
    raise ValueError(f"--preset must be one of {list(PRESETS)}, got {preset!r}.")


def _spacing(preset: str, size: Sequence[int], spacing: float | None) -> float | list[float]:
    """The voxel spacing in mm: ``simple``'s isotropic ``spacing``, ``realistic``'s field of view / ``size``."""
    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {list(PRESETS)}, got {preset!r}.")
    if len(size) != 3 or min(size) < 8:
        raise ValueError(f"size must be three integers >= 8, got {tuple(size)}.")
    if preset == "realistic":
        if spacing is not None:
            fov = " x ".join(f"{f:g}" for f in REALISTIC.fov_mm)
            raise ValueError(
                f"--spacing applies to the simple preset only: the realistic preset's spacing is its field of view "
                f"({fov} mm) divided by --size; choose --size instead (a smaller Z gives thicker slices)."
            )
        return [round(f / n, 6) for f, n in zip(REALISTIC.fov_mm, size)]
    spacing = SIMPLE_SPACING_MM if spacing is None else spacing
    if spacing <= 0:
        raise ValueError(f"--spacing must be > 0 mm, got {spacing}.")
    return spacing


def preset_fingerprint(preset: str) -> str | None:
    """A short hash of the realistic preset's parameters (None for ``simple``, whose arrays a test pins), so a dataset
    or a benchmark result made before a tuning change is not reused."""
    if preset != "realistic":
        return None
    return hashlib.sha256(repr(REALISTIC).encode()).hexdigest()[:16]


def _affine(size: Sequence[int], spacing: float | Sequence[float]) -> np.ndarray:
    """RAS+ affine with ``spacing`` (mm; one value: isotropic) whose origin puts the volume's centre at (0, 0, 0)."""
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    affine = np.diag([*spacing, 1.0])
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
    num: int, seed: int, size: Sequence[int], spacing: float | list[float], preset: str, subjects: dict[str, dict]
) -> dict:
    """MSD metadata; ``subjects`` maps each case to its ``contrast_phase`` (and ``contrast_time_s``, realistic).

    Training entries (and so the datalist's) carry the phase bucket, a string every entry has; the contrast times,
    ``None`` for native subjects, stay in ``generator.contrast_times_s``: a ``None`` in an entry would reach the
    workflows' batches, which cannot collate it.
    """
    training = [
        {
            "image": f"./imagesTr/{c}.nii.gz",
            "label": f"./labelsTr/{c}.nii.gz",
            **({"contrast_phase": info["contrast_phase"]} if preset != "simple" else {}),
        }
        for c, info in subjects.items()
    ]
    generator = {
        "module": "semcl_phantoms.phantoms",
        "version": GENERATOR_VERSION,
        "preset": preset,
        "seed": seed,
        "size": list(size),
        "spacing_mm": spacing,
        "contrast_phases": {c: info["contrast_phase"] for c, info in subjects.items()},
    }
    if preset == "realistic":
        generator["contrast_times_s"] = {c: info["contrast_time_s"] for c, info in subjects.items()}
        generator["preset_fingerprint"] = preset_fingerprint(preset)
    return {
        "name": "SemCLAbdomenPhantom",
        "description": f"Synthetic multi-organ abdominal CT phantoms, {preset} preset (semcl_phantoms.phantoms)",
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
        "generator": generator,
    }


def _same_dataset(
    out: Path, num: int, seed: int, size: Sequence[int], spacing: float | list[float], preset: str
) -> bool:
    """True if ``out`` holds a complete dataset written with the same generator arguments (no preset: simple)."""
    try:
        meta = json.loads((out / "dataset.json").read_text())["generator"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    found = (meta.get("version"), meta.get("preset", "simple"), meta.get("preset_fingerprint"), meta.get("seed"))
    same = found == (GENERATOR_VERSION, preset, preset_fingerprint(preset), seed) and (
        meta.get("size"),
        meta.get("spacing_mm"),
    ) == (list(size), spacing)
    files = [out / "datalist.json"] + [
        out / d / f"phantom_{i:03d}.nii.gz" for d in ("imagesTr", "labelsTr") for i in range(num)
    ]
    return same and len(meta.get("contrast_phases", {})) == num and all(f.is_file() for f in files)


def write_phantom_dataset(
    out: str | os.PathLike,
    num: int = 24,
    seed: int = 0,
    size: Sequence[int] = (96, 96, 96),
    spacing: float | None = None,
    preview: bool = False,
    overwrite: bool = False,
    verbose: bool = True,
    preset: str = "simple",
) -> dict:
    """Write ``num`` phantoms of ``preset`` in MSD layout to ``out`` and return the dataset summary (module docstring).

    ``spacing`` (mm, isotropic) applies to the ``simple`` preset only (default 1.5); the ``realistic`` preset's
    spacing is its field of view divided by ``size``. A complete dataset with the same arguments already at ``out``
    is reused (only the preview is added if asked); an existing folder with other contents is an error unless
    ``overwrite``. Writing happens in a hidden sibling folder that is renamed into place when complete.
    """
    out = Path(out).absolute()
    if num < 4:
        raise ValueError(
            f"--num must be >= 4 (pretrain, finetune, validation and test need one subject each), got {num}."
        )
    resolved = _spacing(preset, size, spacing)
    start = time.perf_counter()
    if _same_dataset(out, num, seed, size, resolved, preset):
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
        _write_cases(staging, num, seed, size, resolved, preset, verbose)
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


def _write_cases(
    folder: Path, num: int, seed: int, size: Sequence[int], spacing: float | list[float], preset: str, verbose: bool
) -> None:
    (folder / "imagesTr").mkdir()
    (folder / "labelsTr").mkdir()
    affine = _affine(size, spacing)
    subjects: dict[str, dict] = {}
    for index in range(num):
        case = f"phantom_{index:03d}"
        subject = generate_phantom(size, seed=(seed, index), preset=preset)
        _write_nifti(subject.image, affine, folder / "imagesTr" / f"{case}.nii.gz")
        _write_nifti(subject.label, affine, folder / "labelsTr" / f"{case}.nii.gz")
        subjects[case] = {"contrast_phase": subject.phase, "contrast_time_s": subject.contrast_time_s}
        if verbose:
            timing = "" if subject.contrast_time_s is None else f" at {subject.contrast_time_s:g} s"
            print(
                f"[phantoms] {index + 1}/{num} {case}: {subject.phase}{timing}, {len(subject.present)} organs",
                flush=True,
            )
    dataset = _dataset_json(num, seed, size, spacing, preset, subjects)
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


def _write_preview(folder: Path, cohort: int = 6) -> None:
    """``preview.png``: the first subject's three slices (simple) or ``cohort`` subjects side by side (realistic)."""
    from .preview import write_cohort_preview, write_preview

    dataset = json.loads((folder / "dataset.json").read_text())
    items = dataset["training"] if dataset["generator"].get("preset", "simple") != "simple" else []

    def read(item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = nib.load(folder / item["image"])
        label = np.asarray(nib.load(folder / item["label"]).dataobj, dtype=np.uint8)
        return image.get_fdata(dtype=np.float32), label, image.affine

    if not items:
        image, label, affine = read(dataset["training"][0])
        write_preview(image, label, affine, LABEL_NAMES, folder / "preview.png")
        return
    subjects = []
    times = dataset["generator"].get("contrast_times_s", {})
    for item in items[:cohort]:
        case = Path(item["image"]).name.split(".")[0]
        timing = "" if times.get(case) is None else f" {times[case]:g} s"
        subjects.append((*read(item), f"{case[-3:]} {item.get('contrast_phase', '')}{timing}"))
    write_cohort_preview(subjects, LABEL_NAMES, folder / "preview.png")


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
        "preset": dataset["generator"].get("preset", "simple"),
        "contrast_phases": {
            phase: list(dataset["generator"]["contrast_phases"].values()).count(phase)
            for phase in dict.fromkeys(dataset["generator"]["contrast_phases"].values())
        },
        "organs": organs,
        "splits": {k: len(v) for k, v in splits.items()},
        "preview": str(folder / "preview.png") if (folder / "preview.png").is_file() else None,
    }


def format_summary(summary: dict) -> str:
    """Human-readable table of :func:`summarise_dataset`'s result."""
    lines = [
        f"phantom dataset: {summary['folder']}",
        f"  preset: {summary['preset']}  subjects: {summary['num_subjects']}  size: {summary['size']}"
        + f"  spacing: {summary['spacing_mm']} mm"
        + (f"  written in {summary['seconds']} s" if "seconds" in summary else "")
        + ("  (reused existing)" if summary.get("reused") else ""),
        f"  {'organ':<14}{'present':>8}{'mean HU':>9}",
    ]
    for name, stats in summary["organs"].items():
        hu = "-" if stats["mean_hu"] is None else f"{stats['mean_hu']:.1f}"
        lines.append(f"  {name:<14}{stats['present']:>8}{hu:>9}")
    lines.append("  contrast phases: " + ", ".join(f"{k}={v}" for k, v in summary["contrast_phases"].items()))
    if summary.get("splits"):  # the dataset's own datalist.json (a benchmark draws its own splits instead)
        lines.append("  splits: " + ", ".join(f"{k}={v}" for k, v in summary["splits"].items()))
    if summary.get("preview"):
        lines.append(f"  preview: {summary['preview']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m semcl_phantoms.phantoms",
        description="Write deterministic multi-organ abdominal CT phantoms in the MSD layout.",
    )
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--num", type=int, default=24, help="number of subjects (>= 4; default 24)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument(
        "--size", type=int, nargs=3, default=(96, 96, 96), metavar=("X", "Y", "Z"), help="voxels (default 96 96 96)"
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="simple",
        help="simple (default; earlier results) or realistic (docs/PHANTOMS.md)",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        default=None,
        help=f"simple preset: isotropic voxel spacing in mm (default {SIMPLE_SPACING_MM})",
    )
    parser.add_argument("--preview", action="store_true", help="also write preview.png (realistic: six subjects)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder with other contents")
    parser.add_argument("--quiet", action="store_true", help="no per-subject progress lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad arguments or unwritable output)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        summary = write_phantom_dataset(
            args.out,
            args.num,
            args.seed,
            tuple(args.size),
            args.spacing,
            args.preview,
            args.overwrite,
            not args.quiet,
            preset=args.preset,
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
