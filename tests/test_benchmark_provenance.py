"""Provenance of the benchmark's runs: no run from uncommitted code unless --allow-dirty, which is recorded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import ATLAS, without_data
from semcl_benchmark import results as results_module
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.results import DirtyTreeError, check_clean_tree, working_tree_changes
from semcl_benchmark.runner import Benchmark
from semcl_tools.hashing import file_sha256


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=folder, check=True,
                   capture_output=True)


@pytest.fixture
def repository(tmp_path) -> Path:
    (tmp_path / "semcl_benchmark").mkdir()
    (tmp_path / "semcl_benchmark" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("notes\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def test_a_clean_tree_runs(repository):
    assert working_tree_changes(repository) == []
    check_clean_tree(allow_dirty=False, root=repository)


def test_a_changed_tracked_file_is_refused_naming_it_and_the_way_out(repository):
    (repository / "notes.txt").write_text("changed\n")
    with pytest.raises(DirtyTreeError, match=r"uncommitted changes \(M notes.txt\).*--allow-dirty"):
        check_clean_tree(allow_dirty=False, root=repository)
    check_clean_tree(allow_dirty=True, root=repository)


def test_an_untracked_module_counts_but_an_untracked_file_elsewhere_does_not(repository):
    (repository / "scratchpad.txt").write_text("not code\n")
    assert working_tree_changes(repository) == []
    (repository / "semcl_benchmark" / "new.py").write_text("y = 2\n")
    assert working_tree_changes(repository) == ["?? semcl_benchmark/new.py"]


def test_the_benchmarks_own_outputs_do_not_count(repository):
    # result files and reports committed earlier, then rewritten by a run: a resumed benchmark is not refused
    for path in ("docs/results/benchmark/v2/finetune__scratch.json", "docs/RESULTS.md", "docs/RESULTS_v1.md"):
        (repository / path).parent.mkdir(parents=True, exist_ok=True)
        (repository / path).write_text("{}\n")
    (repository / "docs" / "PROTOCOL.md").write_text("fixed\n")
    git(repository, "add", "-A")
    git(repository, "commit", "-qm", "results")
    for path in ("docs/results/benchmark/v2/finetune__scratch.json", "docs/RESULTS.md", "docs/RESULTS_v1.md"):
        (repository / path).write_text('{"finished": true}\n')
    assert working_tree_changes(repository) == []
    (repository / "docs" / "PROTOCOL.md").write_text("changed\n")  # the protocol is not an output
    assert working_tree_changes(repository) == [" M docs/PROTOCOL.md"]


def test_outside_git_there_is_nothing_to_refuse(tmp_path):
    assert working_tree_changes(tmp_path / "nowhere") is None
    check_clean_tree(allow_dirty=False, root=tmp_path / "nowhere")


def test_the_benchmark_refuses_a_dirty_tree_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(results_module, "working_tree_changes", lambda root=None: [" M semcl_benchmark/plan.py"])
    benchmark = Benchmark(load_protocol().sizes["quick"], tmp_path / "results", tmp_path / "work")
    planned = benchmark.plan(["scratch"], ["finetune_1"], [0], study=[])
    with pytest.raises(DirtyTreeError, match="M semcl_benchmark/plan.py"):
        benchmark.run(planned)
    assert not (tmp_path / "work").exists()


def test_allow_dirty_is_recorded_in_every_result_file(tmp_path, monkeypatch):
    monkeypatch.setattr(results_module, "working_tree_changes", lambda root=None: [" M semcl_benchmark/plan.py"])
    benchmark = Benchmark(load_protocol().sizes["quick"], tmp_path / "results", tmp_path / "work", allow_dirty=True)
    (run,) = benchmark.plan(["atlas_body_box"], ["finetune_1"], [0], study=[])
    monkeypatch.setattr(benchmark.stages, "atlas", lambda run: ATLAS)
    without_data(benchmark, monkeypatch)
    assert benchmark.run([run]) == []
    provenance = benchmark.store.read(run).provenance
    assert provenance.allow_dirty is True and provenance.code


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    import hashlib

    path = tmp_path / "encoder.pt"
    path.write_bytes(b"weights")
    assert file_sha256(path) == hashlib.sha256(b"weights").hexdigest()


def test_result_files_record_the_commit_the_runs_started_from(tmp_path, monkeypatch):
    """A commit made while the runs go on (e.g. of finished result files) is not recorded as the code they ran."""
    import semcl_benchmark.runner as runner_module

    head = {"commit": "start"}
    monkeypatch.setattr(runner_module, "code_version", lambda: head["commit"])
    benchmark = Benchmark(load_protocol().sizes["quick"], tmp_path / "results", tmp_path / "work", allow_dirty=True)
    (run,) = benchmark.plan(["atlas_body_box"], ["finetune_1"], [0], study=[])

    def atlas_while_a_commit_lands(run):
        head["commit"] = "later"
        return ATLAS

    monkeypatch.setattr(benchmark.stages, "atlas", atlas_while_a_commit_lands)
    without_data(benchmark, monkeypatch)
    benchmark.run([run])
    assert benchmark.store.read(run).provenance.code == "start"


def test_the_unfinished_table_keeps_the_run_order_while_seeds_finish(tmp_path):
    """A group whose first seed has finished keeps its row; it does not move below the groups that follow it."""
    from semcl_benchmark.report.tables import unfinished

    benchmark = Benchmark(load_protocol().sizes["quick"], tmp_path / "results", tmp_path / "work", allow_dirty=True)
    planned = benchmark.plan(["scratch", "atlas"], ["finetune_1"], [0, 1, 2], study=[])
    first = planned[0]
    none_finished = unfinished(planned, set())  # rows (stage, arm, setting, seed ranges)
    some_finished = unfinished(planned, {str(first.key)})
    assert len(none_finished) == len(some_finished) > 1
    assert [row[:3] for row in none_finished] == [row[:3] for row in some_finished]
    assert none_finished[0][3] == "0-2" and some_finished[0][3] == "1-2"
    assert unfinished(planned, {str(run.key) for run in planned}) == []
