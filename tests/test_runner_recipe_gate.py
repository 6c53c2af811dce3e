"""The runner's recipe gate (semcl_benchmark.runner; docs/PROTOCOL_v3.md, sections 5 and 10): the tuning seeds' runs
go first; a main seed's run of an arm that chooses its recipe is refused, named with the reason, until the size
records the choice, and so is every run that needs it; then it runs. The stages are replaced by a recorder: no
workflow runs."""

from __future__ import annotations

import pytest

from semcl_benchmark.plan import Run
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.run_records import RunKey
from semcl_benchmark.runner import Benchmark

CHOSEN = """
sizes:
  tiny_chosen:
    base: v3_tiny
    recipes:
      cascade_semcl:
        chosen: R2
        validation_dice: {R1: 0.5, R2: 0.6, R4: 0.4}
"""


def run(stage, arm, setting, seed, recipe=None, needs=()):
    return Run(RunKey(stage, arm, setting, seed, tuning_recipe=recipe), {"seed": seed}, list(needs))


def units():
    """A main seed's unit of cascade_semcl (pretraining, fine-tuning, its oracle evaluation) and scratch, then the
    tuning seed's run of one candidate, planned in that order."""
    pretrain = run("pretrain", "cascade_semcl", "finetune_1", 0)
    finetune = run("finetune", "cascade_semcl", "finetune_1", 0, needs=[pretrain.key])
    oracle = run("oracle", "cascade_semcl", "finetune_1", 0, needs=[finetune.key])
    scratch = run("finetune", "scratch", "finetune_1", 0)
    tuning = run("finetune", "cascade_semcl", "finetune_1", 100, recipe="R2")
    return [pretrain, finetune, oracle, scratch, tuning]


def recording_benchmark(size_name, tmp_path, monkeypatch, files=()):
    protocol = load_protocol(files)
    benchmark = Benchmark(protocol.sizes[size_name], tmp_path / "results", tmp_path / "work", jobs=1,
                          protocol=protocol, allow_dirty=True)
    executed = []
    monkeypatch.setattr(benchmark, "check", lambda runs: None)
    monkeypatch.setattr(benchmark.stages, "data", lambda seeds: None)
    monkeypatch.setattr(benchmark, "_execute", lambda run: executed.append(run.key.name))
    return benchmark, executed


def test_a_main_seeds_run_of_a_recipe_arm_is_refused_until_its_recipe_is_recorded(tmp_path, monkeypatch, capsys):
    benchmark, executed = recording_benchmark("v3_tiny", tmp_path, monkeypatch)
    planned = units()
    refused = benchmark.refused(planned)
    assert sorted(k.name for k in refused) == ["finetune__cascade_semcl__finetune_1__seed0",
                                               "oracle__cascade_semcl__finetune_1__seed0"]
    reason = refused[RunKey("finetune", "cascade_semcl", "finetune_1", 0)]
    assert "'cascade_semcl' chooses its fine-tuning recipe on the tuning seeds [100]" in reason
    assert "records no choice for it yet" in reason and "python -m semcl_benchmark.recipes --size v3_tiny" in reason
    # a run of another arm that needs a refused one (made up: nothing in v3 does) is skipped, not refused
    refused_key = RunKey("finetune", "cascade_semcl", "finetune_1", 0)
    dependent = run("finetune", "scratch", "finetune_2", 0, needs=[refused_key])
    assert dependent.key not in benchmark.refused([*planned, dependent])
    not_done = benchmark.run([*planned, dependent])
    # the tuning seed's run first, then the main seed's runs that need no recipe; the refused ones never start
    assert executed == ["finetune__cascade_semcl__finetune_1__seed100__R2",
                        "pretrain__cascade_semcl__finetune_1__seed0", "finetune__scratch__finetune_1__seed0"]
    assert sorted(not_done) == sorted([dependent.key.name, *(k.name for k in refused)])
    printed = capsys.readouterr().out
    assert "refused finetune__cascade_semcl__finetune_1__seed0: 'cascade_semcl' chooses" in printed
    assert f"skipped finetune__scratch__finetune_2__seed0: {refused_key} was refused" in printed


def test_once_the_recipe_is_recorded_the_main_seeds_runs_start(tmp_path, monkeypatch):
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text(CHOSEN, encoding="utf-8")
    benchmark, executed = recording_benchmark("tiny_chosen", tmp_path, monkeypatch, [chosen])
    assert benchmark.size.chosen_recipe("cascade_semcl") == "R2"
    planned = units()
    assert benchmark.refused(planned) == {}
    assert benchmark.run(planned) == []
    assert executed[0] == "finetune__cascade_semcl__finetune_1__seed100__R2" and len(executed) == 5
    assert executed.index("finetune__cascade_semcl__finetune_1__seed0") < executed.index(
        "oracle__cascade_semcl__finetune_1__seed0")
    # the other recipe arms still choose first
    supervised = run("finetune", "cascade_supervised", "finetune_2", 1)
    assert list(benchmark.refused([supervised])) == [supervised.key]
    # cascade_semcl_gt takes cascade_semcl's recipe (recipe_of): it runs now, with R2
    gt = run("finetune", "cascade_semcl_gt", "finetune_2", 1)
    assert benchmark.refused([gt]) == {} and benchmark.size.recipe_for("cascade_semcl_gt", 1).name == "R2"


def test_an_arm_taking_anothers_recipe_waits_for_that_choice(tmp_path, monkeypatch):
    benchmark, _ = recording_benchmark("v3_tiny", tmp_path, monkeypatch)
    pretrain = run("pretrain", "cascade_semcl_gt", None, 0)
    gt = run("finetune", "cascade_semcl_gt", "finetune_1", 0, needs=[pretrain.key])
    refused = benchmark.refused([pretrain, gt])
    assert list(refused) == [gt.key]  # its pretraining needs no recipe
    assert refused[gt.key].startswith("'cascade_semcl_gt' takes the recipe of 'cascade_semcl', which chooses its "
                                      "fine-tuning recipe on the tuning seeds [100] first")


def test_a_tuning_seeds_run_of_a_recipe_arm_without_a_candidate_is_refused(tmp_path, monkeypatch):
    benchmark, _ = recording_benchmark("v3_tiny", tmp_path, monkeypatch)
    plain = run("finetune", "cascade_semcl", "finetune_1", 100)
    frozen = run("finetune", "cascade_semcl_frozen", "finetune_1", 0)  # no recipe of its own: never gated
    refused = benchmark.refused([plain, frozen])
    assert list(refused) == [plain.key] and "tries every candidate recipe" in refused[plain.key]


@pytest.mark.parametrize("size", ["default", "quick"])
def test_a_v2_size_has_no_gate(tmp_path, monkeypatch, size):
    benchmark, _ = recording_benchmark(size, tmp_path, monkeypatch)
    assert benchmark.refused([run("finetune", "semcl_exact", "finetune_1", 0)]) == {}
