"""The benchmark's data: the size's phantoms, or the user's own labelled dataset (``--dataset_dir``), and each seed's
datalist.

Either way the data is a folder in the layout the bundle reads (MSD: ``dataset.json`` with ``labels`` and a
``training`` list of ``{"image", "label"}`` entries relative to the folder). A size with ``splits`` (v2) draws every
seed's labelled volumes and pretraining pool anew (:mod:`semcl_benchmark.splits`), one with ``draws: {design: v3}``
takes them from v3's design (:func:`semcl_benchmark.draws_v3.seed_datalists`, tuning seeds included), into
``<work>/datalists/datalist_seed<N>.json`` (never into the user's folder); a size without either (v1) gives every seed
the dataset's own ``datalist.json``.

The bundle's ``pixdim`` is the dataset's spacing: the phantom preset's (the realistic preset's field of view divided
by the volume size), else ``--pixdim``, else the first training image's voxel size. A user's dataset brings its own
classes: the bundle is given its ``dataset.json`` as ``--labels_json``. Paths reach the bundle as data, never inside a
config expression (a folder name with ``'`` would break it, and a crafted one would run as code).

A user's dataset is part of every run's identity: its folder (resolved) names the benchmark's own folder
(:func:`dataset_folder_name`), and a fingerprint of its content (:func:`dataset_manifest`: the SHA-256 of
``dataset.json``, and the size of every image and label file it lists, with the SHA-256 of those up to
:data:`SMALL_FILE_BYTES`) is in every run's configuration. A run made before the dataset was edited therefore counts as
not done: it is left out of the report and run again (:func:`describe_dataset_change` says what changed). Phantoms are
identified by their generator settings instead, as v1 and v2 recorded them. The dataset's entries are checked when the
benchmark starts: every entry names an image and a label, and no two entries name the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import write_json_atomic
from semcl_components.bundle_runtime.datalists import check_distinct_entries
from semcl_tools.hashing import file_sha256

from .draws_v3 import seed_datalists
from .protocol import Size
from .splits import fixed_splits, labelled_counts, seed_datalist

__all__ = ["SMALL_FILE_BYTES", "BenchmarkData", "dataset_folder_name", "dataset_manifest", "describe_dataset_change"]

DATALIST_KEYS = ("image", "label", "contrast_phase")
"""What a case's datalist entry holds (``contrast_phase``: the phase bucket, for stratification and phase labels)."""

CASE_RECORD = ("contrast_phase", "contrast_time_s")
"""What a result file records of each labelled case besides its name (where the dataset records it)."""

SMALL_FILE_BYTES = 4 << 20
"""Files of a user's dataset up to this size (4 MiB: label maps, small images) are fingerprinted by their content,
larger ones by their size alone (reading every CT volume at each start would cost minutes)."""


def dataset_folder_name(folder: str | os.PathLike) -> str:
    """The name of a user's dataset's benchmark folder: ``<folder name>-<8 hex digits of its resolved path>``, so two
    datasets of one folder name (``/a/ok``, ``/b/ok``) never share results."""
    resolved = Path(folder).resolve()
    return f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


def dataset_manifest(folder: Path, entries: Sequence[Mapping]) -> dict:
    """What a user's dataset holds, cheaply: ``dataset.json``'s SHA-256 and every listed file's size (and SHA-256 up to
    :data:`SMALL_FILE_BYTES`), with a ``fingerprint`` of it all.

    Args:
        folder: the dataset folder.
        entries: its ``training`` entries (``image`` and ``label`` relative to ``folder``).

    Returns:
        ``{"fingerprint": 16 hex digits, "dataset_json_sha256": ..., "files": {path: {"bytes": n, "sha256": ...}}}``
        (``sha256`` is ``None`` for a larger file; a missing file has ``bytes`` ``None``).
    """
    files: dict[str, dict] = {}
    for entry in entries:
        for key in ("image", "label"):
            name = os.path.normpath(str(entry[key]))
            path = folder / name
            if name in files:
                continue
            size = path.stat().st_size if path.is_file() else None
            small = size is not None and size <= SMALL_FILE_BYTES
            files[name] = {"bytes": size, "sha256": file_sha256(path) if small else None}
    manifest = {"dataset_json_sha256": file_sha256(folder / "dataset.json"), "files": dict(sorted(files.items()))}
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    return {"fingerprint": digest, **manifest}


def describe_dataset_change(recorded: Mapping, current: Mapping) -> str:
    """What differs between two :func:`dataset_manifest` records, in words (e.g. ``dataset.json changed; 1 file
    changed: labelsTr/a.nii.gz``)."""
    parts = []
    if recorded.get("dataset_json_sha256") != current.get("dataset_json_sha256"):
        parts.append("dataset.json changed")
    old, new = recorded.get("files") or {}, current.get("files") or {}
    for what, names in (
        ("added", [n for n in new if n not in old]),
        ("removed", [n for n in old if n not in new]),
        ("changed", [n for n in new if n in old and new[n] != old[n]]),
    ):
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"{len(names)} file{'s' if len(names) > 1 else ''} {what}: {shown}")
    return "; ".join(parts) or "its fingerprint differs"


class BenchmarkData:
    """The dataset of one benchmark: where it is, what it holds, and every seed's datalist.

    Args:
        size: the benchmark size (its ``data`` makes phantoms; its ``splits`` make the seeds' datalists).
        work: the benchmark's working folder (phantoms in ``<work>/data``, datalists in ``<work>/datalists``).
        dataset_dir: the user's own labelled dataset instead of phantoms.
        pixdim: the grid the bundle resamples to (mm; default: the dataset's spacing).
    """

    def __init__(
        self,
        size: Size,
        work: Path,
        dataset_dir: Path | None = None,
        pixdim: Sequence[float] | None = None,
    ) -> None:
        self.size = size
        self.work = Path(work)
        self.user_dir = None if dataset_dir is None else Path(dataset_dir).absolute()
        self._pixdim = None if pixdim is None else [float(v) for v in pixdim]
        self._manifest: dict | None = None
        if self.user_dir is not None and not (self.user_dir / "dataset.json").is_file():
            raise ValueError(
                f"--dataset_dir {self.user_dir}: no dataset.json; the benchmark reads an MSD-style dataset folder "
                f"(dataset.json with 'labels' and a 'training' list of image/label entries)."
            )
        if self.user_dir is not None:  # a faulty dataset stops the benchmark before any work, naming what is wrong
            self.check()

    def check(self) -> None:
        """Read a user's dataset as the benchmark will: its classes, its entries (each with an image and a label, no
        file named twice) and enough cases for the size's splits.

        Raises:
            ValueError: naming the file and the problem.
        """
        from semcl_components.bundle_runtime.labels import class_names

        class_names(self.folder / "dataset.json")
        entries = self.entries()
        for index, entry in enumerate(entries):
            for key in ("image", "label"):
                if not (self.folder / entry[key]).is_file():
                    raise ValueError(
                        f"{self.folder / 'dataset.json'}: the {key} file {entry[key]} of training entry {index} "
                        f"({self.folder / entry[key]}) does not exist."
                    )
        self.check_splits(len(entries))

    @property
    def folder(self) -> Path:
        """The dataset folder (the bundle's ``dataset_dir``)."""
        return self.user_dir or self.work / "data"

    @property
    def phantom_preset(self) -> str:
        return self.size.data.get("preset", "simple")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The phantoms' (X, Y, Z) size (``data: size`` is one edge or three)."""
        edge = self.size.data["size"]
        return tuple(edge) if isinstance(edge, (list, tuple)) else (edge,) * 3

    @property
    def pixdim(self) -> list[float]:
        """The bundle's ``pixdim``: ``--pixdim``, the phantom preset's spacing, or the first training image's."""
        if self._pixdim is not None:
            return self._pixdim
        if self.user_dir is None:
            from semcl_phantoms.phantoms import SIMPLE_SPACING_MM
            from semcl_phantoms.realistic_preset import REALISTIC

            if self.phantom_preset == "realistic":
                return [round(f / n, 6) for f, n in zip(REALISTIC.fov_mm, self.shape)]
            return [float(self.size.data.get("spacing", SIMPLE_SPACING_MM))] * 3
        import nibabel as nib

        first = self.entries()[0]["image"]
        return [round(float(v), 6) for v in nib.load(self.folder / first).header.get_zooms()[:3]]

    @property
    def class_names(self) -> list[str] | None:
        """A user's dataset's foreground classes (``dataset.json`` ``labels``); ``None``: the bundle's own."""
        if self.user_dir is None:
            return None
        from semcl_components.bundle_runtime.labels import class_names

        return class_names(self.user_dir / "dataset.json")

    @property
    def manifest(self) -> dict | None:
        """A user's dataset's :func:`dataset_manifest` (taken once, when first asked); ``None`` for phantoms."""
        if self.user_dir is None:
            return None
        if self._manifest is None:
            self._manifest = dataset_manifest(self.user_dir, self.entries())
        return self._manifest

    def check_splits(self, cases: int) -> None:
        """Stop if the size's ``splits`` need more cases than the dataset's ``cases`` (each split takes at least one).

        Raises:
            ValueError: naming the dataset, its case count and the splits' sum.
        """
        splits = self.size.splits
        if splits is None:
            return
        wanted = {k: splits.get(k) for k in ("test", "validation", "training_pool", "pretraining_pool")}
        if not all(isinstance(v, int) and v >= 1 for v in wanted.values()):
            return  # the split functions name a missing or invalid count
        if sum(wanted.values()) > cases:
            counts = " + ".join(f"{k} {v}" for k, v in wanted.items())
            raise ValueError(
                f"the dataset {self.folder} has {cases} cases, but size {self.size.name!r}'s splits need "
                f"{counts} = {sum(wanted.values())} (pretraining_pool: cases outside the other three); use a dataset "
                "with more cases or a size with smaller splits (--protocol FILE)."
            )

    def bundle_settings(self) -> dict:
        """What every bundle call of this data is given: ``dataset_dir``, ``pixdim`` and a user's ``labels_json``.

        Every path is a plain value (the configs read the classes with ``class_names(@labels_json)``), whatever
        characters the folder's name holds.
        """
        settings = {"dataset_dir": self.folder, "pixdim": self.pixdim}
        if self.user_dir is not None:
            settings["labels_json"] = str(self.user_dir / "dataset.json")
        return settings

    def config(self) -> dict:
        """The run configurations' ``data``: the size's phantoms (as v1 wrote them; a tuned preset adds its
        ``preset_fingerprint``, so results on phantoms of another tuning do not count), or the user's folder and
        grid."""
        if self.user_dir is None:
            from semcl_phantoms.phantoms import preset_fingerprint

            data = dict(self.size.data)
            fingerprint = preset_fingerprint(self.phantom_preset)
            if fingerprint is not None:  # a run on phantoms of another tuning is another run
                data["preset_fingerprint"] = fingerprint
        else:  # its content too: a run made before the dataset was edited is another run
            data = {"dataset_dir": str(self.user_dir), "pixdim": self.pixdim, "fingerprint": self.manifest["fingerprint"]}
        if self.size.splits is not None:
            data["splits"] = dict(self.size.splits)
        if self.size.draws is not None:
            data["draws"] = dict(self.size.draws)
        return data

    def entries(self, keys: Sequence[str] = DATALIST_KEYS) -> list[dict]:
        """The dataset's cases: ``dataset.json``'s ``training`` entries, with only ``keys`` (those a datalist holds:
        a data loader cannot batch a ``null``, such as a native phantom's ``contrast_time_s``)."""
        path = self.folder / "dataset.json"
        try:
            dataset = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        entries = dataset.get("training") if isinstance(dataset, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: no 'training' list of image/label entries.")
        for index, entry in enumerate(entries):
            missing = [k for k in ("image", "label") if not isinstance(entry, dict) or not entry.get(k)]
            if missing:
                raise ValueError(
                    f"{path}: training entry {index} ({entry!r}) has no {' and no '.join(missing)}; the benchmark needs "
                    "a label map for every case."
                )
        check_distinct_entries(entries, f"{path}, list 'training'", base_dir=self.folder)
        return [{k: entry[k] for k in keys if k in entry} for entry in entries]

    def datalist_file(self, seed: int) -> Path:
        """The datalist of ``seed``: drawn for it (a size with ``splits`` or ``draws``), else the dataset's
        ``datalist.json``."""
        if not self.size.drawn:
            return self.folder / "datalist.json"
        return self.work / "datalists" / f"datalist_seed{seed}.json"

    def datalist(self, seed: int) -> dict:
        return json.loads(self.datalist_file(seed).read_text(encoding="utf-8"))

    def prepare(self, seeds: Sequence[int], verbose: bool = False) -> None:
        """Write the phantoms (unless there already) and the datalist of every seed in ``seeds`` (a datalist already
        written as drawn is left as it is); ``verbose``: a line per phantom written."""
        if self.user_dir is None:
            from semcl_phantoms.phantoms import write_phantom_dataset

            data = self.size.data
            write_phantom_dataset(self.folder, num=data["num"], seed=data["seed"], size=self.shape,
                                  preset=self.phantom_preset, preview=True, verbose=verbose)
        elif not self.size.drawn:
            raise ValueError(f"size {self.size.name!r} has no splits: it cannot draw seeds from --dataset_dir.")
        if not self.size.drawn:
            return
        if self.size.draws is not None:
            drawn = seed_datalists(self.entries(), self.size.draws, self.size.seeds, self.size.tuning_seeds)
            unknown = [seed for seed in seeds if seed not in drawn]
            if unknown:
                raise ValueError(f"size {self.size.name!r} draws the seeds {sorted(drawn)}, not {unknown}.")
            for seed in seeds:
                self._write_datalist(seed, drawn[seed])
            return
        splits = dict(self.size.splits)
        fixed = fixed_splits(self.entries(), splits["test"], splits["validation"], splits["training_pool"],
                             seed=self.size.data.get("seed", 0))
        counts = labelled_counts(self.size.settings)
        for seed in seeds:
            self._write_datalist(seed, seed_datalist(fixed, seed, counts, splits["pretraining_pool"]))

    def _write_datalist(self, seed: int, datalist: dict) -> None:
        """Write a seed's datalist unless the file holds it already."""
        path = self.datalist_file(seed)
        if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != datalist:
            write_json_atomic(datalist, path)

    def test_phases(self, cases: Sequence[str]) -> list[str | None] | None:
        """The contrast phase bucket of each test case (file names), for per-phase tables; ``None`` if none known."""
        phases = {os.path.basename(e["image"]): e.get("contrast_phase") for e in self.entries()}
        found = [phases.get(case) for case in cases]
        return found if any(found) else None

    def labelled_cases(self, seed: int, setting: str) -> list[dict]:
        """The labelled cases of a seed and setting: case name and, where recorded, contrast phase and time."""
        recorded = {e["image"]: e for e in self.entries(keys=("image", *CASE_RECORD))}
        return [{"case": os.path.basename(e["image"]).split(".")[0],
                 **{k: v for k, v in recorded.get(e["image"], {}).items() if k in CASE_RECORD}}
                for e in self.datalist(seed)[setting]]
