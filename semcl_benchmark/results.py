"""Result files: one JSON per finished run, what the workflows' outputs hold, and where a run was made.

Each file holds a :class:`~semcl_benchmark.run_records.RunRecord` (``<run key>.json``). A run's result counts only
while its file holds the run's configuration hash (:func:`semcl_benchmark.plan.config_hash`): a changed protocol makes
the affected runs count as not done.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import read_json as read_json_file
from semcl_tools.repository import ROOT

from .plan import Run
from .run_records import RunKey, RunRecord, parse_run_record, write_run_record

__all__ = [
    "CODE_FOLDERS",
    "DirtyTreeError",
    "ResultStore",
    "check_clean_tree",
    "code_version",
    "cpu_model",
    "machine",
    "read_case_dice",
    "read_confusion",
    "read_json",
    "results_folder",
    "working_tree_changes",
]


def results_folder(size_name: str) -> Path:
    """Where a size's result files are committed: ``docs/results/benchmark/<size>``."""
    return ROOT / "docs" / "results" / "benchmark" / size_name


class ResultStore:
    """The result files of one benchmark in ``folder``: ``<run key>.json``, each a
    :class:`~semcl_benchmark.run_records.RunRecord`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def file(self, run: Run) -> Path:
        return self.folder / f"{run.key.name}.json"

    def _content(self, run: Run) -> dict | None:
        """The run's file's content if it exists with the run's configuration hash, else ``None``.

        A damaged file (cut short by a copy or a sync) counts as not finished: it is named on stderr, left out of a
        report, and replaced when the run is repeated.
        """
        path = self.file(run)
        if not path.is_file():
            return None
        try:
            result = read_json_file(path, fix="The run counts as not finished: a benchmark run repeats it.")
        except ValueError as error:
            print(f"[benchmark] warning: {error}", file=sys.stderr, flush=True)
            return None
        return result if isinstance(result, dict) and result.get("config_hash") == run.hash else None

    def _checked(self, run: Run) -> tuple[dict, RunRecord] | None:
        """The run's file's content and record, if it holds the run's configuration hash and is a run record (a
        malformed file is named on stderr and counts as not finished)."""
        content = self._content(run)
        if content is None:
            return None
        try:
            return content, parse_run_record(content, self.file(run))
        except ValueError as error:
            print(f"[benchmark] warning: {error} The run counts as not finished.", file=sys.stderr, flush=True)
            return None

    def read(self, run: Run) -> RunRecord | None:
        """The run's record if its file exists with the run's configuration hash, else ``None``."""
        checked = self._checked(run)
        return None if checked is None else checked[1]

    def finished(self, run: Run) -> bool:
        return self.read(run) is not None

    def records(self, planned: Iterable[Run]) -> list[RunRecord]:
        """The record of every finished run among ``planned``, in their order."""
        return [record for run in planned if (record := self.read(run)) is not None]

    def load(self, planned: Iterable[Run]) -> dict[RunKey, dict]:
        """The file content of every finished run among ``planned``, by run key (the report's input until it reads
        :meth:`records`)."""
        return {run.key: checked[0] for run in planned if (checked := self._checked(run)) is not None}

    def write(self, run: Run, record: RunRecord) -> None:
        """Write ``run``'s record (atomically)."""
        write_run_record(record, self.file(run))


# ------------------------------------------------------------------------------------------- workflow outputs


def read_json(path: Path) -> dict:
    """A JSON file's content; ``{}`` if there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else {}


def read_case_dice(path: Path) -> dict:
    """``{"cases": [...], "classes": [...], "dice": [[per class] per case]}`` from MONAI ``MetricsSaver``'s CSV."""
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    header, body = rows[0], rows[1:]
    classes = [name for name in header[1:] if name != "mean"]
    dice = [[_number(v) for v in row[1 : 1 + len(classes)]] for row in body]
    return {"cases": [Path(row[0]).name for row in body], "classes": classes, "dice": dice}


def read_confusion(path: Path) -> dict:
    """``{"classes": [...], "counts": [[...]]}`` from ``ConfusionMatrixWriter``'s CSV (rows: true class)."""
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    return {"classes": rows[0][1:], "counts": [[int(v) for v in row[1:]] for row in rows[1:]]}


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return None if number != number else number


# ------------------------------------------------------------------------------------------------- provenance


CODE_FOLDERS = ("semcl_components", "semcl_phantoms", "semcl_benchmark", "semcl_tools", "bundles", "scripts")
"""Folders whose untracked files count as uncommitted code (a new module a run would import)."""


OUTPUT_PATHS = ("docs/results", "docs/RESULTS*.md")
"""What the benchmark itself writes into the repository (result files, reports): changes there are not code, so a run
resumed before they are committed is not refused."""
_NOT_OUTPUTS = [".", *(f":(exclude,glob){path}" if "*" in path else f":(exclude){path}" for path in OUTPUT_PATHS)]


class DirtyTreeError(ValueError):
    """The benchmark would run from a working tree with uncommitted changes."""


def working_tree_changes(root: Path = ROOT) -> list[str] | None:
    """``git status`` lines of uncommitted changes to tracked files (outside :data:`OUTPUT_PATHS`) and of untracked
    files under :data:`CODE_FOLDERS`; ``None`` outside a git checkout (nothing to compare with)."""
    try:
        tracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *_NOT_OUTPUTS],
                                 cwd=root, capture_output=True, text=True, check=True).stdout.splitlines()
        untracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *CODE_FOLDERS],
                                   cwd=root, capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return None
    return tracked + [line for line in untracked if line.startswith("??")]


def check_clean_tree(allow_dirty: bool, root: Path = ROOT) -> None:
    """Refuse to run from a working tree with uncommitted changes, unless ``allow_dirty``.

    Raises:
        DirtyTreeError: naming the first changed files, how to commit them, and ``--allow-dirty``.
    """
    changes = working_tree_changes(root)
    if allow_dirty or not changes:
        return
    shown = "; ".join(line.strip() for line in changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
    raise DirtyTreeError(
        f"the working tree {root} has uncommitted changes ({shown}): a result file must name the code that made it. "
        "Commit (or stash) them first, or pass --allow-dirty, which every result file then records."
    )


def code_version() -> str:
    """The repository's commit, with ``+changes`` when tracked files other than the benchmark's outputs
    (:data:`OUTPUT_PATHS`) differ from it ('unknown' outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *_NOT_OUTPUTS], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU model, core count and torch and Python versions of this machine."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
