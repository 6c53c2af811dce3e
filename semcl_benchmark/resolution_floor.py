"""The resolution floor of benchmark v3 (``docs/PROTOCOL_v3.md``, sections 2 and 11: measurement M7): each test label
taken to stage 1's coarse grid and back, scored against itself per organ. It is the best an image-only arm (stage 1,
``scratch``, the upper bound) can score at the fine grid, whose predictions live at the coarse grid; a reference row
beside the results, never an endpoint.

The way there is stage 1's: ``train.yaml``'s ``deterministic_transforms`` read a label with ``Orientationd`` (RAS),
``Spacingd`` at ``--pixdim``, nearest neighbour, and ``SpatialPadd`` to ``pad_size`` (its ``roi_size``)
(:func:`coarse_label`; MONAI puts the first coarse voxel's centre on the first fine voxel's, so at twice the spacing
each coarse voxel holds the class of the fine voxel under its centre). The way back is the benchmark's stage-1 scoring
(:mod:`semcl_benchmark.fine_grid`): ``nearest_onto`` the label file's grid, ``case_dice`` per organ (an organ absent
from the case left out). At twice the spacing every other fine voxel lies midway between two coarse centres, and
floating-point rounding inside the resampling decides the tie, differently for coarse arrays of other extents: the
padding is part of the geometry (on ``v3_tiny`` an unpadded coarse label comes back different in 355 of 24,576
voxels), so the floor pads as stage 1 does and counts exactly what the stage-1 endpoint can reach.

Command (data only, no network; the size's phantoms are written first if its work folder lacks them)::

    python -m semcl_benchmark.resolution_floor --size v3 [--workdir W] [--out FILE] [--protocol FILE ...]

The file (default ``docs/results/benchmark/v3_sizing/resolution_floor.json``: a sizing measurement, not a v3 result)
holds every test case's Dice per organ, each organ's mean over the cases holding it, each case's mean organ Dice and
their mean over cases (the endpoint's definition, section 7), the grids, the data's description (``preset_fingerprint``
for phantoms) and each label file's SHA-256, the commit and the machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from monai.data import MetaTensor

from semcl_components.bundle_runtime.atomic_io import write_json_atomic
from semcl_tools.hashing import file_sha256
from semcl_tools.repository import ROOT

from .datasets import BenchmarkData
from .fine_grid import case_dice, nearest_onto
from .protocol import Size, load_protocol_or_exit
from .results import code_version, machine, results_folder
from .run_records import TestScores, case_id

__all__ = ["MEASUREMENT", "coarse_label", "floor_label", "main", "resolution_floor", "size_resolution_floor"]

#: what the result file measures
MEASUREMENT = "M7: the resolution floor (docs/PROTOCOL_v3.md, sections 2 and 11)"
#: the prefix of the command's lines
PREFIX = "[floor]"


def coarse_label(label: MetaTensor, pixdim: Sequence[float], pad_size: Sequence[int] | None = None) -> MetaTensor:
    """``label`` ``(1, *S)`` (a label map with its affine) as stage 1's workflows read it at ``pixdim`` (mm):
    ``(1, *S')``, RAS (``Orientation``), resampled nearest neighbour (``Spacing``) and padded with background to at
    least ``pad_size`` voxels per axis (``SpatialPad``; ``None``: not padded), as ``train.yaml``'s
    ``deterministic_transforms`` with ``--pixdim`` and ``pad_size``."""
    from monai.transforms import Compose, Orientation, Spacing, SpatialPad

    with warnings.catch_warnings():  # MONAI's notice of Orientation's changed default (the bundle takes the default)
        warnings.simplefilter("ignore", FutureWarning)
        orientation = Orientation(axcodes="RAS")
    padding = [] if pad_size is None else [SpatialPad(spatial_size=tuple(int(v) for v in pad_size))]
    return Compose([orientation, Spacing(pixdim=tuple(float(v) for v in pixdim), mode="nearest"), *padding])(label)


def floor_label(label: MetaTensor, pixdim: Sequence[float], pad_size: Sequence[int] | None = None) -> MetaTensor:
    """``label`` ``(1, *S)`` taken to ``pixdim`` (:func:`coarse_label`) and back onto its own grid, nearest neighbour
    as the stage-1 scoring takes predictions (:func:`~semcl_benchmark.fine_grid.nearest_onto`): ``(1, *S)``."""
    return nearest_onto(coarse_label(label, pixdim, pad_size), label)


def resolution_floor(labels: Mapping[str, Path], pixdim: Sequence[float], pad_size: Sequence[int] | None,
                     class_names: Sequence[str], emit: Callable[[str], None] = print) -> dict:
    """The resolution floor of label files: each one's :func:`floor_label` scored against it per organ
    (:func:`~semcl_benchmark.fine_grid.case_dice`).

    Args:
        labels: ``{case id: label file}``.
        pixdim: the coarse grid (mm per axis).
        pad_size: the coarse label's least extent (voxels per axis), as stage 1 pads it; ``None``: not padded.
        class_names: the organs, in class order.
        emit: where each case's line goes.

    Returns:
        ``{"cases": [case ids], "classes": class_names, "dice": [[per organ] per case]}`` (``None``: organ absent).
    """
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True, ensure_channel_first=True)
    dice = []
    for number, (case, path) in enumerate(labels.items(), 1):
        label = load(path)
        dice.append(case_dice(floor_label(label, pixdim, pad_size), label, len(class_names) + 1))
        present = [v for v in dice[-1] if v is not None]
        emit(f"{PREFIX} {number}/{len(labels)} {case}: mean organ Dice {sum(present) / max(len(present), 1):.4f}")
    return {"cases": list(labels), "classes": list(class_names), "dice": dice}


def _number(value: float) -> float | None:
    """A mean as the file holds it: 6 digits, ``None`` for NaN (no case held the organ)."""
    return None if math.isnan(value) else round(float(value), 6)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def size_resolution_floor(size: Size, data: BenchmarkData, seed: int | None = None,
                          emit: Callable[[str], None] = print) -> dict:
    """The resolution floor of a size's fixed test set at its ``stage1_pixdim``, padded to stage 1's ``roi_size``
    (the size's ``finetune``) as its workflows pad (the test cases of ``seed``'s datalist, by default the size's first
    seed: every seed's datalist holds the same ``test``); the data and the datalist are written first if missing.

    Returns:
        the result file's content (see the module).
    """
    from semcl_components.bundle_runtime.labels import class_names

    if size.stage1_pixdim is None:
        raise ValueError(f"size {size.name!r} has no stage1_pixdim: its image-only arms work at the data's own grid, "
                         "so it has no resolution floor.")
    if "roi_size" not in size.finetune:
        raise ValueError(f"size {size.name!r} has no finetune roi_size: stage 1's pad size (its roi_size) is unknown.")
    pad_size = list(size.finetune["roi_size"])
    seed = size.seeds[0] if seed is None else seed
    data.prepare([seed], verbose=True)
    test = data.datalist(seed)["test"]
    labels = {case_id(entry["label"]): data.folder / entry["label"] for entry in test}
    pixdim = [float(size.stage1_pixdim)] * 3
    emit(f"{PREFIX} size {size.name!r}: {len(labels)} test labels of {data.folder} to {pixdim} mm (padded to "
         f"{pad_size}) and back")
    started = time.perf_counter()
    scores = resolution_floor(labels, pixdim, pad_size, class_names(data.folder / "dataset.json"), emit)
    phases = data.test_phases([Path(entry["image"]).name for entry in test])
    summary = TestScores.from_json(scores)
    return {
        "measurement": MEASUREMENT,
        "size": size.name,
        "grids": {"coarse_pixdim": pixdim, "pad_size": pad_size, "scoring_pixdim": data.pixdim},
        "data": data.config(),
        "datalist": {"seed": seed, "file": str(data.datalist_file(seed))},
        "test": {**scores, **({"contrast_phases": phases} if phases else {})},
        "label_sha256": {case: file_sha256(path) for case, path in labels.items()},
        "organ_dice": {organ: _number(v) for organ, v in summary.organ_dice().items()},
        "case_mean_dice": [_number(v) for v in summary.case_means()],
        "mean_dice": _number(summary.mean_dice),
        "seconds": round(time.perf_counter() - started, 1),
        "code_version": code_version(),
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semcl_benchmark.resolution_floor",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", required=True, help="the size whose test labels are measured (e.g. v3)")
    parser.add_argument("--workdir", type=Path, help="the benchmark's work folder, where its data and datalists are "
                                                     "(default: runs/benchmark/<size>; written there if missing)")
    parser.add_argument("--out", type=Path, help="the result file (default: docs/results/benchmark/v3_sizing/"
                                                 "resolution_floor.json)")
    parser.add_argument("--protocol", nargs="+", type=Path, default=[], help="protocol files over the built-in one")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1; the measurement takes seconds)")
    args = parser.parse_args(argv)
    size = load_protocol_or_exit(parser, args.protocol, {"--size": args.size}).sizes[args.size]
    torch.set_num_threads(args.threads)
    try:
        work = args.workdir or ROOT / "runs" / "benchmark" / size.name
        result = size_resolution_floor(size, BenchmarkData(size, work))
    except (OSError, ValueError) as error:
        print(f"{PREFIX} {error}", file=sys.stderr)
        return 2
    out = args.out or results_folder("v3_sizing") / "resolution_floor.json"
    write_json_atomic(result, out)
    organs = ", ".join(f"{organ} {_shown(v)}" for organ, v in result["organ_dice"].items())
    print(f"{PREFIX} mean Dice {_shown(result['mean_dice'])} ({organs}); written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
