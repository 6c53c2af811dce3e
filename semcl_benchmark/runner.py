"""Running a benchmark: every unfinished planned run, in parallel, each after the runs it needs, resumable.

Each finished run writes its result file (:class:`~semcl_benchmark.results.ResultStore`); a run whose file holds its
configuration hash is skipped, so a benchmark can be stopped and completed later, even on another machine.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from semcl_components.folder_lock import FolderLock
from semcl_tools.progress import emit

from .datasets import BenchmarkData
from .plan import Planner, Run, Workspace
from .protocol import Protocol, Size, load_protocol
from .results import ResultStore, check_clean_tree, code_version, machine
from .stages import Stages

__all__ = ["Benchmark", "failure_reason"]


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
        self._planned: dict[str, Run] = {}
        self.stages = Stages(self.planner, threads_per_job=threads_per_job, prefix=prefix, finished=self._result)

    @property
    def data_dir(self) -> Path:
        return self.planner.data.folder

    def plan(self, arms: list[str], settings: list[str], seeds: list[int], study: list[str] | None = None) -> list[Run]:
        """See :meth:`semcl_benchmark.plan.Planner.plan`."""
        return self.planner.plan(arms, settings, seeds, study)

    def check(self, runs: list[Run]) -> None:
        """See :meth:`semcl_benchmark.plan.Planner.check`."""
        self.planner.check(runs)

    def _result(self, key: str) -> dict | None:
        """The result of a finished planned run by key (``None``: not planned now or not finished)."""
        run = self._planned.get(key)
        return None if run is None else self.store.read(run)

    def result_file(self, run: Run) -> Path:
        return self.store.file(run)

    def finished(self, run: Run) -> bool:
        return self.store.finished(run)

    def folder(self, run: Run) -> Path:
        return self.workspace.folder(run)

    def run(self, planned: list[Run], max_runs: int | None = None) -> list[str]:
        """Run every unfinished run (those a needed encoder depends on first); returns the keys that failed.

        Holds a lock on the results folder meanwhile: a second benchmark of the same size would redo (and delete)
        the runs this one is doing.

        Raises:
            ValueError: a planned workflow call has an invalid setting (nothing was run).
            DirtyTreeError: the working tree has uncommitted changes and ``allow_dirty`` is false (nothing was run).
        """
        check_clean_tree(self.allow_dirty)
        # the commit the runs start from, read once: a commit made while they run must not be recorded as theirs
        self.code = code_version()
        lock = FolderLock(self.store.folder, "benchmark results folder")
        lock.acquire()
        try:
            return self._run_all(planned, max_runs)
        finally:
            lock.release()

    def _todo(self, planned: list[Run], max_runs: int | None) -> list[Run]:
        by_key = {run.key: run for run in planned}
        todo = [run for run in planned if not self.finished(run)]
        needed = {need for run in todo for need in run.needs}
        for key in needed:  # a finished pretraining whose encoder file is gone (another machine) is run again
            run = by_key.get(key)
            if run is None or run.config["stage"] != "pretrain":
                continue
            encoder = self.planner.encoder_file(run.config["arm"], run.config["seed"])
            if run not in todo and not encoder.is_file():
                todo.insert(0, run)
        return todo if max_runs is None else todo[:max_runs]

    def _run_all(self, planned: list[Run], max_runs: int | None) -> list[str]:
        self._planned = {run.key: run for run in planned}
        todo = self._todo(planned, max_runs)
        self.check(todo)
        self.stages.data(sorted({run.config["seed"] for run in planned}))
        total, done, failed = len(todo), 0, []
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
                        self._say(f"skipped {run.key}: {blocked[0]} failed")
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
        result = self.stages(run)
        result.update(key=run.key, config=run.config, config_hash=run.hash, machine=machine(), code=self.code,
                      allow_dirty=self.allow_dirty, finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                      total_seconds=round(time.perf_counter() - start, 1))
        self.store.write(run, result)

    def _say(self, message: str) -> None:
        emit(f"{self.prefix} {message}")
