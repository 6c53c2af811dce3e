"""Running a benchmark: every unfinished planned run, in parallel, each after the runs it needs, resumable.

Each finished run writes its result file (:class:`~semcl_benchmark.results.ResultStore`): its
:class:`~semcl_benchmark.run_records.RunRecord`, with the seed's whole draw (labelled, pretraining pool, validation
and test case ids) and the schema version; a run whose file holds its configuration hash is skipped, so a benchmark
can be stopped and completed later, even on another machine.

The recipe selection (v3, ``docs/PROTOCOL_v3.md`` section 5): the runs of a size's tuning seeds go first, and a run of
an arm that chooses its fine-tuning recipe (the size's ``recipe_arms``) on any other seed is refused, named with the
reason, while the size's ``recipes`` records no choice for the arm (:meth:`Benchmark.refused`); the choice is written
by ``python -m semcl_benchmark.recipes`` from the tuning runs' result files (:mod:`semcl_benchmark.recipes`).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from semcl_components.bundle_runtime.folder_lock import FolderLock
from semcl_tools.progress import emit

from .cascade_stages import CascadeStages
from .datasets import BenchmarkData, describe_dataset_change
from .plan import Planner, Run, Workspace
from .protocol import Protocol, Size, load_protocol
from .results import ResultStore, check_clean_tree, code_version, machine
from .run_records import Draw, Provenance, RunKey, RunRecord, RunSettings

__all__ = ["Benchmark", "failure_reason"]

#: key stages of a recipe arm's runs that come before its fine-tuning and do not depend on the recipe
_BEFORE_RECIPE = ("pretrain", "predict", "embedding")


def failure_reason(error: BaseException) -> str:
    """The first line of what stopped a run: the cause behind MONAI's ``applying transform <...>`` wrappers, which
    name only the transform (e.g. the input check that named the file)."""
    while str(error).startswith("applying transform") and error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Benchmark:
    """One benchmark size: its plan, its stages, its result files, and the schedule that runs them.

    Args:
        size: the size to plan and run.
        results: the folder of the result files.
        work: runs, logs and data.
        jobs: runs at a time.
        threads_per_job: CPU threads of each run.
        prefix: put before every line printed.
        protocol: the arms (default: the built-in protocol).
        dataset_dir: the user's own labelled dataset instead of the size's phantoms.
        pixdim: the grid the workflows resample to (default: the dataset's spacing).
        device: ``cpu`` or ``cuda`` for every workflow (default: a GPU when there is one).
        processes: processes per workflow call (``> 1``: ``torchrun``).
        allow_dirty: run from a working tree with uncommitted changes (recorded in every result file).
    """

    def __init__(
        self,
        size: Size,
        results: Path,
        work: Path,
        jobs: int = 2,
        threads_per_job: int = 1,
        prefix: str = "[bench]",
        protocol: Protocol | None = None,
        dataset_dir: Path | None = None,
        pixdim: list[float] | None = None,
        device: str | None = None,
        processes: int = 1,
        allow_dirty: bool = False,
    ) -> None:
        self.size = size
        self.jobs = jobs
        self.prefix = prefix
        self.allow_dirty = allow_dirty
        self.code = ""  # the commit the runs start from: read by run()
        self.workspace = Workspace(work)
        data = BenchmarkData(size, self.workspace.work, dataset_dir, pixdim)
        self.planner = Planner(protocol or load_protocol(), size, self.workspace, data, device, processes)
        self.store = ResultStore(results)
        self._planned: dict[RunKey, Run] = {}
        self._work_lock: FolderLock | None = None
        self.stages = CascadeStages(self.planner, threads_per_job=threads_per_job, prefix=prefix, finished=self._result)

    @property
    def data_dir(self) -> Path:
        return self.planner.data.folder

    def plan(self, arms: list[str], settings: list[str], seeds: list[int], study: list[str] | None = None) -> list[Run]:
        """See :meth:`semcl_benchmark.plan.Planner.plan`."""
        return self.planner.plan(arms, settings, seeds, study)

    def check(self, runs: list[Run]) -> None:
        """See :meth:`semcl_benchmark.plan.Planner.check`."""
        self.planner.check(runs)

    def _result(self, key: RunKey) -> RunRecord | None:
        """The record of a finished planned run by key (``None``: not planned now or not finished)."""
        run = self._planned.get(key)
        return None if run is None else self.store.read(run)

    def result_file(self, run: Run) -> Path:
        return self.store.file(run)

    def finished(self, run: Run) -> bool:
        return self.store.finished(run)

    def folder(self, run: Run) -> Path:
        return self.workspace.folder(run)

    def refused(self, runs: list[Run]) -> dict[RunKey, str]:
        """The runs among ``runs`` that may not start yet, each with the reason: a run of a recipe arm (the size's
        ``recipe_arms``) past its pretraining on a seed other than the tuning seeds while the size records no chosen
        recipe for the arm (or for the arm whose recipe it takes: the size's ``recipe_of``), and a tuning seed's run
        of a recipe arm that tries no candidate recipe."""
        size, refused = self.size, {}
        for run in runs:
            key = run.key
            chooser = size.recipe_of.get(key.arm, key.arm)
            if chooser not in size.recipe_arms or key.stage in _BEFORE_RECIPE:
                continue
            if key.seed in size.tuning_seeds and key.tuning_recipe is None:
                refused[key] = (f"{key.arm!r} tries every candidate recipe on the tuning seed {key.seed}; a run "
                                "without one counts for nothing (docs/PROTOCOL_v3.md, section 5)")
            elif key.seed not in size.tuning_seeds and size.chosen_recipe(key.arm) is None:
                takes = "" if chooser == key.arm else f" takes the recipe of {chooser!r}, which"
                refused[key] = (
                    f"{key.arm!r}{takes} chooses its fine-tuning recipe on the tuning seeds {list(size.tuning_seeds)} first "
                    f"(docs/PROTOCOL_v3.md, section 5), and size {size.name!r} records no choice for it yet: run the "
                    f"tuning seeds (--seeds {' '.join(map(str, size.tuning_seeds))}), then "
                    f"`python -m semcl_benchmark.recipes --size {size.name}`"
                )
        return refused

    def run(self, planned: list[Run], max_runs: int | None = None) -> list[str]:
        """Run every unfinished run (those a needed encoder depends on first; the tuning seeds' runs before the
        others); returns the names of the runs that failed or were refused (:meth:`refused`, named with the reason
        and never started, like every run that needs one).

        Holds a lock on the results folder meanwhile, and on the work folder once the calls are checked: a second
        benchmark of the same size, or one with other results but this work folder, would redo (and delete) the runs
        this one is doing.

        Raises:
            ValueError: a planned workflow call has an invalid setting (nothing was run).
            DirtyTreeError: the working tree has uncommitted changes and ``allow_dirty`` is false (nothing was run).
        """
        check_clean_tree(self.allow_dirty)
        self.check_one_dataset()
        # the commit the runs start from, read once: a commit made while they run must not be recorded as theirs
        self.code = code_version()
        lock = FolderLock(self.store.folder, "benchmark results folder")
        lock.acquire()
        try:
            return [key.name for key in self._run_all(planned, max_runs)]
        finally:
            lock.release()
            if self._work_lock is not None:
                self._work_lock.release()
                self._work_lock = None

    def _lock_work(self) -> None:
        """Lock the work folder (runs, logs, data) unless it is the results folder, which is locked already."""
        work = self.workspace.work
        if os.path.realpath(work) == os.path.realpath(self.store.folder):
            return
        conflict = "train into the same run folders and start each other's runs over"
        self._work_lock = FolderLock(work, "benchmark workdir", "runs, logs and data", conflict)
        self._work_lock.acquire()

    def _todo(self, planned: list[Run], max_runs: int | None) -> list[Run]:
        """The unfinished planned runs, the tuning seeds' first, and every finished run that one of them needs whose
        file for it is gone (:meth:`left_file`; e.g. the work folder of another machine): it is run again first."""
        by_key = {run.key: run for run in planned}
        tuning = self.size.tuning_seeds
        todo = sorted((run for run in planned if not self.finished(run)), key=lambda run: run.key.seed not in tuning)
        queued = {run.key for run in todo}
        needed = [need for run in todo for need in run.needs]
        while needed:
            run = by_key.get(needed.pop())
            if run is None or run.key in queued:
                continue
            left = self.left_file(run)
            if left is not None and not left.is_file():
                todo.insert(0, run)
                queued.add(run.key)
                needed.extend(run.needs)  # its own inputs may be gone too
        return todo if max_runs is None else todo[:max_runs]

    def left_file(self, run: Run) -> Path | None:
        """The file a finished run leaves in the work folder for the runs that need it, ``None`` if none: a
        pretraining's weights; v3's stage-1 or stage-2 network (``finetune`` of an arm with a ``stage``: the stage-1
        predictions and the oracle-prior test read it) and a ``predict`` run's datalist of predictions."""
        key, cascade = run.key, self.planner.cascade
        if key.stage == "pretrain":
            return self.planner.pretrained_file(key)
        if key.stage == "finetune" and self.planner.arm(key.arm).stage is not None:
            return cascade.model_file(key)
        if key.stage == "predict":
            return cascade.predictions_datalist(key.setting, key.seed)
        return None

    def _run_all(self, planned: list[Run], max_runs: int | None) -> list[RunKey]:
        self._planned = {run.key: run for run in planned}
        todo = self._todo(planned, max_runs)
        refused = self.refused(todo)
        for key, reason in refused.items():
            self._say(f"refused {key}: {reason}")
        todo = [run for run in todo if run.key not in refused]
        self.check(todo)
        self._lock_work()  # after the check: a refused plan leaves no folder behind
        self.stages.data(sorted({run.key.seed for run in planned}))
        total, done, failed = len(todo), 0, list(refused)
        self._say(f"{len(planned)} runs planned, {len(planned) - len([r for r in planned if not self.finished(r)])} "
                  f"finished already, {total} to do now with {self.jobs} parallel jobs")
        pending = {run.key: run for run in todo}
        running: dict[Future, Run] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while pending or running:
                busy = {r.key for r in running.values()}
                ready = [run for run in pending.values() if all(n not in pending and n not in busy for n in run.needs)]
                for run in ready[: self.jobs - len(running)]:
                    blocked = [n for n in run.needs if n in failed]
                    del pending[run.key]
                    if blocked:
                        failed.append(run.key)
                        why = "was refused" if blocked[0] in refused else "failed"
                        self._say(f"skipped {run.key}: {blocked[0]} {why}")
                        continue
                    running[pool.submit(self._execute, run)] = run
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    run = running.pop(future)
                    done += 1
                    if future.exception() is not None:
                        failed.append(run.key)
                        self._say(f"FAILED {run.key} ({done}/{total}): {failure_reason(future.exception())}")
                    else:
                        self._say(f"finished {run.key} ({done}/{total})")
        return failed

    def _execute(self, run: Run) -> None:
        start = time.perf_counter()
        measured = self.stages(run)
        data = self.planner.data
        manifest = data.manifest  # what a user's dataset held: a later edit is named by what changed
        provenance = Provenance(self.code, self.allow_dirty, machine(), time.strftime("%Y-%m-%d %H:%M:%S"),
                                round(time.perf_counter() - start, 1),
                                None if manifest is None else {"dataset_dir": str(data.folder), **manifest})
        draw = Draw.from_datalist(data.datalist(run.key.seed), run.key.setting)
        self.store.write(run, RunRecord.of_run(RunSettings(run.config, run.hash), draw, measured, provenance))

    def _recorded(self, files: list[Path]) -> dict[Path, dict]:
        """The result dicts in ``files`` that hold a run's configuration (unreadable files are skipped)."""
        results = {}
        for path in files:
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(result, dict) and isinstance(result.get("config"), dict):
                results[path] = result
        return results

    def check_one_dataset(self) -> None:
        """Refuse to run into a results folder that holds runs of another dataset: their result files have the same
        names, so each benchmark would replace the other's (each dataset gets a folder of its own by default).

        Raises:
            ValueError: naming both datasets, a result file of the other and ``--results``.
        """
        data = self.planner.data
        mine = None if data.user_dir is None else str(data.user_dir)
        for path, result in self._recorded(sorted(self.store.folder.glob("*.json"))).items():
            theirs = (result["config"].get("data") or {}).get("dataset_dir")
            if theirs != mine:
                raise ValueError(
                    f"--results {self.store.folder} holds result files of {_dataset_name(theirs)} (e.g. {path.name}), "
                    f"and this benchmark runs on {_dataset_name(mine)}: results of two datasets in one folder replace "
                    "each other's files. Give another --results (without it, each dataset gets a folder of its own)."
                )

    def dataset_changes(self, planned: list[Run]) -> str | None:
        """Which planned runs' result files were made from another version of the user's dataset, and what changed;
        ``None`` if none (or the data are phantoms). Such runs count as not done: left out of the report, run again."""
        data = self.planner.data
        current = data.manifest
        if current is None:
            return None
        files = [self.store.file(run) for run in planned if self.store.file(run).is_file()]
        changes: dict[str, list[str]] = {}
        for path, result in self._recorded(files).items():
            recorded = result.get("dataset")
            if not isinstance(recorded, dict) or recorded.get("fingerprint") == current["fingerprint"]:
                continue
            changes.setdefault(describe_dataset_change(recorded, current), []).append(path.stem)
        if not changes:
            return None
        count = sum(len(keys) for keys in changes.values())
        what = " | ".join(f"{change} (e.g. {keys[0]})" for change, keys in changes.items())
        return (
            f"{count} result file(s) in {self.store.folder} were made from another version of the dataset "
            f"{data.folder}: {what}. They count as not done: left out of the report, and run again (their files "
            "replaced) by a run of the benchmark."
        )

    def _say(self, message: str) -> None:
        emit(f"{self.prefix} {message}")


def _dataset_name(dataset_dir: str | None) -> str:
    """A dataset in a message: the user's folder, or the phantoms."""
    return "the phantoms" if dataset_dir is None else f"the dataset {dataset_dir}"
