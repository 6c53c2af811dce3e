"""Resuming v3's units on another machine (semcl_benchmark.runner; docs/PROTOCOL_v3.md, section 10): a finished run
whose file for the runs needing it is gone (stage 1's or stage 2's network, stage 1's predictions, a pretraining's
encoder) is run again before them, and so is what it needs in turn; the tuning seeds' runs come first. Planning only:
no workflow runs."""

from __future__ import annotations

from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.runner import Benchmark

ORACLE = "oracle__cascade_scratch__finetune_1__seed0"


def planned_unit(tmp_path):
    protocol = load_protocol()
    benchmark = Benchmark(protocol.sizes["v3_tiny"], tmp_path / "results", tmp_path / "work", protocol=protocol)
    return benchmark, benchmark.plan(["cascade_scratch"], ["finetune_1"], [0, 100], study=[])


def todo_names(benchmark, planned, unfinished):
    benchmark.finished = lambda run: run.key.name not in unfinished  # every other run has its result file
    return [run.key.name for run in benchmark._todo(planned, None)]


def test_a_needed_run_whose_file_is_gone_is_run_again_with_what_it_needs(tmp_path):
    benchmark, planned = planned_unit(tmp_path)
    # a fresh machine: no network, no predictions in the work folder; the oracle test needs stage 2's network, which
    # needs stage 1's predictions, which need stage 1's network
    todo = todo_names(benchmark, planned, {ORACLE})
    assert sorted(todo) == sorted([ORACLE, "finetune__cascade_scratch__finetune_1__seed0",
                                   "predict__scratch__finetune_1__seed0", "finetune__scratch__finetune_1__seed0"])
    assert todo[-1] == ORACLE
    by_name = {run.key.name: run for run in planned}
    stage2 = benchmark.left_file(by_name["finetune__cascade_scratch__finetune_1__seed0"])
    stage2.parent.mkdir(parents=True)
    stage2.write_bytes(b"weights")
    assert todo_names(benchmark, planned, {ORACLE}) == [ORACLE]  # its network is there: nothing else to redo
    predictions = benchmark.left_file(by_name["predict__scratch__finetune_1__seed0"])
    assert predictions.name == "datalist.json" and benchmark.left_file(by_name[ORACLE]) is None


def test_the_tuning_seeds_runs_go_first(tmp_path):
    benchmark, _ = planned_unit(tmp_path)
    # a recipe arm runs on the tuning seed (its candidates), cascade_scratch on the main seed only
    planned = benchmark.plan(["cascade_scratch", "cascade_semcl"], ["finetune_1"], [0, 100], study=[])
    benchmark.finished = lambda run: False
    seeds = [run.key.seed for run in benchmark._todo(planned, None)]
    assert seeds == sorted(seeds, key=lambda seed: seed != 100) and seeds[0] == 100 and seeds[-1] == 0
