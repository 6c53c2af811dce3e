"""The recipe selection of benchmark v3 (semcl_benchmark.recipes; docs/PROTOCOL_v3.md, section 5): the criterion (mean
best validation Dice over the tuning seeds and settings), ties to the earlier recipe, missing runs refused, and the
choice written into the protocol file with its comments kept. No workflow runs: records are made in memory."""

from __future__ import annotations

import difflib

import shutil

import pytest
import yaml

from semcl_benchmark.protocol import BUILTIN_PROTOCOL, load_protocol
from semcl_benchmark.recipes import TIE, main, select_recipes, tuning_keys, write_recipes
from semcl_benchmark.run_records import (
    Draw,
    Provenance,
    Recipe,
    RunKey,
    RunRecord,
    RunSettings,
    write_run_record,
)

SETTINGS = ("finetune_1", "finetune_2")
SEEDS = (100, 101)


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


@pytest.fixture(scope="module")
def v3(protocol):
    return protocol.sizes["v3"]


def tuning_record(arm: str, recipe: str, setting: str, seed: int, dice: float | None,
                  recorded_recipe: str | None = None) -> RunRecord:
    config = {"stage": "cascade", "arm": arm, "setting": setting, "seed": seed, "probe": False,
              "tuning_recipe": recipe, "refine": {"max_epochs": 10}}
    values = {"stage": "cascade", "epochs": 10, "steps_per_epoch": 1, "best_metric": dice, "best_metric_epoch": 5,
              "test": {"cases": ["c1.nii.gz"], "classes": ["liver"], "dice": [[0.5]]},
              "recipe": Recipe(recorded_recipe or recipe, 1.0).to_json()}
    return RunRecord.of_run(RunSettings(config, "0" * 16), Draw(("a",), (), ("v",), ("c1",)), values, Provenance())


def records(arm: str, means: dict[str, float], spread: float = 0.02) -> list[RunRecord]:
    """Four tuning runs per candidate whose best validation Dice average to ``means[candidate]`` (the four values
    differ, so a selection that averaged fewer runs would score otherwise)."""
    offsets = (-1.5 * spread, -0.5 * spread, 0.5 * spread, 1.5 * spread)
    runs = [(setting, seed) for seed in SEEDS for setting in SETTINGS]
    return [tuning_record(arm, recipe, setting, seed, mean + offset)
            for recipe, mean in means.items() for (setting, seed), offset in zip(runs, offsets)]


def test_a_candidate_is_scored_by_its_four_tuning_runs(v3, protocol):
    keys = tuning_keys(v3, protocol, "cascade_semcl", "R2")
    assert sorted(k.name for k in keys) == sorted(
        f"finetune__cascade_semcl__{setting}__seed{seed}__R2" for seed in SEEDS for setting in SETTINGS)


def test_the_best_mean_validation_dice_is_chosen(v3, protocol):
    found = records("cascade_semcl", {"R1": 0.60, "R2": 0.64, "R4": 0.55})
    (choice,) = select_recipes(v3, protocol, found, ["cascade_semcl"]).values()
    assert choice.chosen == "R2" and choice.validation_dice["R2"] == pytest.approx(0.64)
    assert list(choice.validation_dice) == ["R1", "R2", "R4"]
    assert choice.to_entry() == {"chosen": "R2", "validation_dice": {"R1": 0.6, "R2": 0.64, "R4": 0.55}}


@pytest.mark.parametrize("means, chosen", [
    ({"R1": 0.600, "R2": 0.604, "R4": 0.59}, "R1"),  # R2 better by less than 0.005: the earlier R1
    ({"R1": 0.600, "R2": 0.610, "R4": 0.6075}, "R2"),  # R4 within 0.005 of R2, but later
    ({"R1": 0.590, "R2": 0.6060, "R4": 0.6100}, "R2"),  # R2 within 0.005 of the best, R4
    ({"R1": 0.500, "R2": 0.6040, "R4": 0.6100}, "R4"),  # R2 0.006 below: no tie
])
def test_ties_within_the_margin_go_to_the_earlier_recipe(v3, protocol, means, chosen):
    assert TIE == 0.005
    choices = select_recipes(v3, protocol, records("cascade_supervised", means), ["cascade_supervised"])
    assert choices["cascade_supervised"].chosen == chosen


def test_missing_or_unusable_tuning_runs_are_refused_naming_them(v3, protocol):
    found = records("cascade_semcl", {"R1": 0.60, "R2": 0.64, "R4": 0.55})
    found = [r for r in found if r.key.name != "finetune__cascade_semcl__finetune_2__seed101__R2"]
    found += [tuning_record("cascade_semcl", "R2", "finetune_2", 101, None)]  # no best validation Dice
    found = [r for r in found if r.key.name != "finetune__cascade_semcl__finetune_1__seed100__R4"]
    found += [tuning_record("cascade_semcl", "R4", "finetune_1", 100, 0.7, recorded_recipe="R1")]
    found = [r for r in found if r.key.name != "finetune__cascade_semcl__finetune_1__seed101__R1"]
    with pytest.raises(ValueError, match="3 are missing or unusable") as error:
        select_recipes(v3, protocol, found, ["cascade_semcl"])
    message = str(error.value)
    assert "finetune__cascade_semcl__finetune_1__seed101__R1 (no result file of its configuration)" in message
    assert "finetune__cascade_semcl__finetune_2__seed101__R2 (no best validation Dice)" in message
    assert "finetune__cascade_semcl__finetune_1__seed100__R4 (it records the recipe R1)" in message
    with pytest.raises(ValueError, match="no result file"):  # every recipe arm by default: the others have no runs
        select_recipes(v3, protocol, records("cascade_semcl", {"R1": .6, "R2": .6, "R4": .6}))


def test_an_arm_that_chooses_no_recipe_is_refused(v3, protocol, tmp_path):
    with pytest.raises(ValueError, match="cascade_scratch chooses no recipe"):
        select_recipes(v3, protocol, [], ["cascade_scratch"])
    mine = tmp_path / "mine.yaml"  # a recipe arm the size plans in none of its settings
    mine.write_text("sizes:\n  mine:\n    base: v3\n    setting_arms: {finetune_1: [scratch], finetune_2: [scratch]}\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="cascade_semcl with R1 \\(the size plans no tuning run of it\\)"):
        select_recipes(load_protocol([mine]).sizes["mine"], protocol, [], ["cascade_semcl"])


def builtin_copy(tmp_path):
    path = tmp_path / "protocol.yaml"
    shutil.copy(BUILTIN_PROTOCOL, path)
    return path


def test_the_choice_is_written_into_the_sizes_entry_keeping_every_other_line(v3, protocol, tmp_path):
    path = builtin_copy(tmp_path)
    before = path.read_text(encoding="utf-8")
    choices = select_recipes(v3, protocol, records("cascade_semcl", {"R1": 0.6, "R2": 0.64, "R4": 0.5}),
                             ["cascade_semcl"])
    write_recipes(path, v3, choices)
    after = path.read_text(encoding="utf-8")
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    assert [line.strip() for line in removed] == ["recipes: {}"]  # only the v3 size's entry changed
    assert "    recipes:\n      cascade_semcl:\n        chosen: R2\n" in after
    assert yaml.safe_load(after)["sizes"]["v3"]["recipes"] == {"cascade_semcl": choices["cascade_semcl"].to_entry()}
    assert before.count("#") == after.count("#")
    # the size now records the choice; another size (v3_tiny, based on v3) does not take it over
    chosen = load_protocol_from(path)
    assert chosen.sizes["v3"].chosen_recipe("cascade_semcl") == "R2" and chosen.sizes["v3_tiny"].recipes == {}
    assert chosen.sizes["v3"].recipe_for("cascade_semcl", 0) == Recipe("R2", 0.1)  # at v3's stage-2 cap
    # the same choice again changes nothing; another choice for a recorded arm is refused
    write_recipes(path, chosen.sizes["v3"], choices)
    assert path.read_text(encoding="utf-8") == after
    other = select_recipes(v3, protocol, records("cascade_semcl", {"R1": 0.7, "R2": 0.64, "R4": 0.5}),
                           ["cascade_semcl"])
    with pytest.raises(ValueError, match="records the recipe 'R2' for 'cascade_semcl' already"):
        write_recipes(path, chosen.sizes["v3"], other)
    assert path.read_text(encoding="utf-8") == after


def load_protocol_from(builtin):
    """The protocol as if ``builtin`` were the built-in file."""
    import semcl_benchmark.protocol as module

    saved = module.BUILTIN_PROTOCOL
    module.BUILTIN_PROTOCOL = builtin
    try:
        return load_protocol()
    finally:
        module.BUILTIN_PROTOCOL = saved


def test_a_size_without_a_recipes_entry_is_refused(v3, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("sizes:\n  v3:\n    base: default\n  other:\n    recipes: {}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="size 'v3' has no 'recipes:' entry"):
        write_recipes(path, v3, {})
    # an arm of the size's name is not the size
    path.write_text("arms:\n  v3:\n    recipes: {}\nsizes:\n  v3:\n    base: default\n", encoding="utf-8")
    with pytest.raises(ValueError, match="size 'v3' has no 'recipes:' entry"):
        write_recipes(path, v3, {})


def test_the_command_writes_the_user_file_that_defines_the_size(tmp_path, capsys):
    """A size of a user's protocol file (v3 with a stage-2 cap of 20 epochs, one recipe arm): the command reads the
    result files of the tuning runs the size plans, prints the table and writes the choice into that file. A file
    of another configuration (an older protocol) counts as missing, as for the runner."""
    from semcl_benchmark.runner import Benchmark

    mine = tmp_path / "mine.yaml"
    mine.write_text("# my tuning\nsizes:\n  mine:\n    base: v3\n    refine: {max_epochs: 20}\n"
                    "    finetune: {max_epochs: 40}\n    pretrain: {steps: 60}\n    recipe_arms: [cascade_semcl]\n"
                    "    recipes: {}  # written by the selection\n", encoding="utf-8")
    protocol = load_protocol([mine])
    size, results, work = protocol.sizes["mine"], tmp_path / "results", tmp_path / "work"
    planned = Benchmark(size, results, work, protocol=protocol).plan(["cascade_semcl"], list(size.settings),
                                                                     list(size.tuning_seeds), study=[])
    tuning = [run for run in planned if run.key.tuning_recipe is not None]
    assert sorted(run.key for run in tuning) == sorted(
        key for candidate in size.recipe_candidates for key in tuning_keys(size, protocol, "cascade_semcl", candidate))
    means = {"R1": 0.6, "R2": 0.58, "R4": 0.66}
    by_key = {record.key: record for record in records("cascade_semcl", means)}
    for run in tuning:
        made = by_key[run.key]
        record = RunRecord.of_run(RunSettings(run.config, run.hash), made.draw, made.result.values, Provenance())
        write_run_record(record, results / f"{run.key.name}.json")
    command = ["--size", "mine", "--results", str(results), "--workdir", str(work), "--protocol", str(mine)]
    assert main([*command, "--dry-run"]) == 0 and load_protocol([mine]).sizes["mine"].recipes == {}
    assert "| `cascade_semcl` | 0.6000 | 0.5800 | **0.6600** | R4 |" in capsys.readouterr().out
    stale = results / f"{tuning[0].key.name}.json"
    kept = stale.read_text(encoding="utf-8")
    stale.write_text(kept.replace(tuning[0].hash, "0" * 16), encoding="utf-8")
    assert main(command) == 2 and f"{tuning[0].key.name} (no result file of its configuration)" in (
        capsys.readouterr().err)
    stale.write_text(kept, encoding="utf-8")
    assert main(command) == 0
    size = load_protocol([mine]).sizes["mine"]
    assert size.chosen_recipe("cascade_semcl") == "R4" and mine.read_text(encoding="utf-8").startswith("# my tuning\n")
    assert size.recipe_for("cascade_semcl", 0) == Recipe("R4", 1.0, encoder_freeze_epochs=2)


def test_a_tuning_key_names_its_candidate():
    key = RunKey("finetune", "cascade_semcl", "finetune_1", 100, tuning_recipe="R2")
    assert RunKey.parse(key.name).tuning_recipe == "R2"
