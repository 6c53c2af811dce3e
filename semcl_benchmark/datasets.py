"""The benchmark's data: the size's phantoms, or the user's own labelled dataset (``--dataset_dir``), and each seed's
datalist.

Either way the data is a folder in the layout the bundle reads (MSD: ``dataset.json`` with ``labels`` and a
``training`` list of ``{"image", "label"}`` entries relative to the folder). A size with ``splits`` draws every seed's
labelled volumes and pretraining pool anew (:mod:`semcl_benchmark.splits`) into ``<work>/datalists/datalist_seed<N>.json``
(never into the user's folder); a size without (v1) gives every seed the dataset's own ``datalist.json``.

The bundle's ``pixdim`` is the dataset's spacing: the phantom preset's (the realistic preset's field of view divided
by the volume size), else ``--pixdim``, else the first training image's voxel size. A user's dataset brings its own
classes: the bundle is given ``class_names`` read from its ``dataset.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from semcl_components.atomic_io import write_json_atomic

from .protocol import Size
from .splits import fixed_splits, labelled_counts, seed_datalist

__all__ = ["BenchmarkData"]

DATALIST_KEYS = ("image", "label", "contrast_phase")
"""What a case's datalist entry holds (``contrast_phase``: the phase bucket, for stratification and phase labels)."""

CASE_RECORD = ("contrast_phase", "contrast_time_s")
"""What a result file records of each labelled case besides its name (where the dataset records it)."""


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
        if self.user_dir is not None and not (self.user_dir / "dataset.json").is_file():
            raise ValueError(
                f"--dataset_dir {self.user_dir}: no dataset.json; the benchmark reads an MSD-style dataset folder "
                f"(dataset.json with 'labels' and a 'training' list of image/label entries)."
            )

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
            from semcl_components.data.phantoms import SIMPLE_SPACING_MM
            from semcl_components.data.realistic_preset import REALISTIC

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
        from semcl_components.bundle_utils import class_names

        return class_names(self.user_dir / "dataset.json")

    def bundle_settings(self) -> dict:
        """What every bundle call of this data is given: ``dataset_dir``, ``pixdim`` and a user's ``class_names``."""
        settings = {"dataset_dir": self.folder, "pixdim": self.pixdim}
        if self.user_dir is not None:
            path = (self.user_dir / "dataset.json").as_posix()
            settings["class_names"] = f"$@semcl_components.bundle_utils.class_names('{path}')"
        return settings

    def config(self) -> dict:
        """The run configurations' ``data``: the size's phantoms (as v1 wrote them; a tuned preset adds its
        ``preset_fingerprint``, so results on phantoms of another tuning do not count), or the user's folder and
        grid."""
        if self.user_dir is None:
            from semcl_components.data.phantoms import preset_fingerprint

            data = dict(self.size.data)
            fingerprint = preset_fingerprint(self.phantom_preset)
            if fingerprint is not None:  # a run on phantoms of another tuning is another run
                data["preset_fingerprint"] = fingerprint
        else:
            data = {"dataset_dir": str(self.user_dir), "pixdim": self.pixdim}
        if self.size.splits is not None:
            data["splits"] = dict(self.size.splits)
        return data

    def entries(self, keys: Sequence[str] = DATALIST_KEYS) -> list[dict]:
        """The dataset's cases: ``dataset.json``'s ``training`` entries, with only ``keys`` (those a datalist holds:
        a data loader cannot batch a ``null``, such as a native phantom's ``contrast_time_s``)."""
        dataset = json.loads((self.folder / "dataset.json").read_text(encoding="utf-8"))
        entries = dataset.get("training")
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{self.folder / 'dataset.json'}: no 'training' list of image/label entries.")
        return [{k: entry[k] for k in keys if k in entry} for entry in entries]

    def datalist_file(self, seed: int) -> Path:
        """The datalist of ``seed``: drawn for it (a size with ``splits``), else the dataset's ``datalist.json``."""
        if self.size.splits is None:
            return self.folder / "datalist.json"
        return self.work / "datalists" / f"datalist_seed{seed}.json"

    def datalist(self, seed: int) -> dict:
        return json.loads(self.datalist_file(seed).read_text(encoding="utf-8"))

    def prepare(self, seeds: Sequence[int]) -> None:
        """Write the phantoms (unless there already) and the datalist of every seed in ``seeds``."""
        if self.user_dir is None:
            from semcl_components.data.phantoms import write_phantom_dataset

            data = self.size.data
            write_phantom_dataset(self.folder, num=data["num"], seed=data["seed"], size=self.shape,
                                  preset=self.phantom_preset, preview=True, verbose=False)
        elif self.size.splits is None:
            raise ValueError(f"size {self.size.name!r} has no splits: it cannot draw seeds from --dataset_dir.")
        if self.size.splits is None:
            return
        splits = dict(self.size.splits)
        fixed = fixed_splits(self.entries(), splits["test"], splits["validation"], splits["training_pool"],
                             seed=self.size.data.get("seed", 0))
        counts = labelled_counts(self.size.settings)
        for seed in seeds:
            datalist = seed_datalist(fixed, seed, counts, splits["pretraining_pool"])
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
