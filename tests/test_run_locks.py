"""One run per folder it writes, and no workflow left running by a killed parent (issue 35 item 13).

- Inference and evaluation lock their ``output_dir`` (training locks its ``ckpt_dir``: tests/test_handlers.py), the
  benchmark its results folder and its work folder: a second run into a folder in use stops naming the folder and the
  process that holds it.
- A workflow started by :func:`semcl_tools.bundle_run.run_logged` (the benchmark's and the demo's) ends when its parent
  is killed with ``kill -9``, so a resumed benchmark never trains beside the killed one's child in one folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ATLAS, TINY_INFERENCE_ARGS, TINY_TRAIN_ARGS, without_data
from semcl_components.bundle_runtime import folder_lock
from semcl_components.bundle_runtime.folder_lock import FolderInUseError, FolderLock, lock_for_run

REPOSITORY = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------------
# a killed parent's workflow ends with it
# ---------------------------------------------------------------------------------------------------------------------

PARENT = """
import sys
from semcl_tools.bundle_run import run_logged

pid_file, log_file = sys.argv[1:3]
child = "import os, pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(300)"
run_logged("sleeper", [sys.executable, "-c", child, pid_file], log_file, prefix="[test]")
"""


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (ended, not yet reaped by its new parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_workflow_ends_within_seconds_when_its_parent_is_killed_with_sigkill(tmp_path):
    """Before: the child slept on for its 300 s after ``kill -9`` of the process that ran it through run_logged."""
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, pid_file, tmp_path / "child.log"], cwd=REPOSITORY, env=env)
    child = None
    try:
        deadline = time.time() + 60
        while not (pid_file.is_file() and pid_file.read_text(encoding="utf-8")) and time.time() < deadline and parent.poll() is None:
            time.sleep(0.1)
        assert pid_file.is_file(), "the child never started"
        child = int(pid_file.read_text(encoding="utf-8"))
        assert _running(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 5
        while _running(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not _running(child), f"the child {child} still runs 5 s after its parent was killed with SIGKILL"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and _running(child):
            os.kill(child, signal.SIGKILL)


def test_run_logged_still_runs_and_logs_its_command(tmp_path):
    from semcl_tools.bundle_run import run_logged

    result = run_logged("echo", [sys.executable, "-c", "print('hello')"], tmp_path / "echo.log", prefix="[test]")
    assert result.seconds >= 0
    assert (tmp_path / "echo.log").read_text(encoding="utf-8").splitlines()[1] == "hello"


# ---------------------------------------------------------------------------------------------------------------------
# one run per output folder
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def held_for_run():
    """Releases and forgets the locks :func:`lock_for_run` took for this test process."""
    yield
    for lock in folder_lock._HELD.values():
        lock.release()
    folder_lock._HELD.clear()


def test_lock_for_run_holds_a_folder_for_the_process_and_refuses_another_holder(tmp_path, held_for_run):
    folder = tmp_path / "out"
    first = lock_for_run(folder, "output_dir", "segmentations")
    assert first is not None and first.held and lock_for_run(folder, "output_dir", "segmentations") is first
    with pytest.raises(FolderInUseError, match=rf"output_dir {folder} is in use by pid {os.getpid()} on "):
        FolderLock(folder, "output_dir").acquire()


def test_lock_for_run_leaves_the_folder_to_rank_zero(tmp_path, monkeypatch, held_for_run):
    monkeypatch.setenv("RANK", "1")
    assert lock_for_run(tmp_path / "out", "output_dir") is None
    assert not (tmp_path / "out").exists()


WORKFLOWS = {  # configs, settings, what the folder holds
    "inference": (["inference"], ["--load_pretrain", "false", *TINY_INFERENCE_ARGS], "segmentations"),
    "evaluate": (["train", "evaluate"], TINY_TRAIN_ARGS, "metric files"),
}


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_a_second_writer_to_an_output_dir_in_use_is_refused_naming_it(run_bundle, phantom_dataset, tmp_path, workflow):
    """Before: the second run wrote into the folder the first one was writing (segmentations, metric CSVs)."""
    configs, args, holds = WORKFLOWS[workflow]
    output_dir = tmp_path / "out"
    holder = FolderLock(output_dir, "output_dir")
    holder.acquire()
    try:
        run = run_bundle(
            configs,
            ["--dataset_dir", phantom_dataset, "--output_dir", output_dir, "--ckpt_dir", tmp_path / "models", *args],
            expect_success=False,
        )
    finally:
        holder.release()
    assert run.returncode != 0
    assert f"output_dir {output_dir} is in use by pid {os.getpid()} on" in run.log, run.log[-3000:]
    assert f"Two runs in one folder would overwrite and mix each other's {holds}: wait for that run" in run.log
    assert sorted(p.name for p in output_dir.iterdir()) == [".lock"]


def test_a_second_benchmark_on_a_workdir_in_use_is_refused_naming_it(tmp_path, monkeypatch):
    """Before: a benchmark with its own --results but another's --workdir ran (and restarted) the same run folders."""
    from semcl_benchmark.protocol import load_protocol
    from semcl_benchmark.runner import Benchmark

    work = tmp_path / "work"
    benchmark = Benchmark(load_protocol().sizes["quick"], tmp_path / "results", work, allow_dirty=True)
    (run,) = benchmark.plan(["atlas_body_box"], ["finetune_1"], [0], study=[])
    monkeypatch.setattr(benchmark.stages, "atlas", lambda run: ATLAS)
    without_data(benchmark, monkeypatch)
    other = FolderLock(work, "benchmark workdir")
    other.acquire()
    try:
        with pytest.raises(
            FolderInUseError,
            match=rf"benchmark workdir {work} is in use by pid {os.getpid()} on .* "
            "would train into the same run folders",
        ):
            benchmark.run([run])
    finally:
        other.release()
    assert not benchmark.finished(run)
    assert benchmark.run([run]) == [] and benchmark.finished(run)
    assert FolderLock(work).acquire() is None  # released when the benchmark ends
