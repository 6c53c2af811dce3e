"""Benchmark v3's protocol entries (semcl_benchmark.protocol; docs/PROTOCOL_v3.md, sections 4 and 5): the secondary
arms (the ground-truth arm on its own seeds, with the method's recipe), the recipe candidates as data, the recipe arms
and the recorded recipes, the oracle arms, and malformed
entries refused naming the file and the entry."""

from __future__ import annotations

import dataclasses

import pytest

from semcl_benchmark.protocol import RecipeCandidate, load_protocol
from semcl_benchmark.run_records import Recipe


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


def test_v3_plans_the_secondary_arms_and_the_upper_bound(protocol):
    v3 = protocol.sizes["v3"]
    assert {"cascade_semcl_gt", "cascade_supervised"} <= set(v3.arms)
    gt, semcl = protocol.arm("cascade_semcl_gt", v3), protocol.arm("cascade_semcl", v3)
    assert (gt.pool_masks, semcl.pool_masks, gt.stage) == ("ground_truth", "stage1", "cascade")
    assert gt.pretrain == semcl.pretrain  # the same pretraining, but for the pool's masks
    scratch = protocol.arm("scratch", v3)
    assert v3.plans(scratch, "finetune_all", 2) and not v3.plans(scratch, "finetune_all", 3)
    assert not v3.plans(semcl, "finetune_all", 0)
    assert v3.oracle_arms == ("cascade_scratch", "cascade_semcl")
    assert v3.tuning_seeds == (100, 101) and not set(v3.tuning_seeds) & set(v3.seeds)


def test_the_recipe_candidates_are_the_protocols_table(protocol):
    v3 = protocol.sizes["v3"]
    assert v3.recipe_arms == ("cascade_semcl", "cascade_supervised")
    # R3 (a warm-up) dropped at sizing (section 11); the others keep their names
    assert v3.recipe_candidates == {"R1": RecipeCandidate("R1", 1.0), "R2": RecipeCandidate("R2", 0.1),
                                    "R4": RecipeCandidate("R4", 1.0, encoder_freeze_fraction=0.1)}
    assert v3.recipes == {} and v3.chosen_recipe("cascade_semcl") is None
    # at a cap of 600 epochs R4 freezes the encoder for 60
    assert [c.at_cap(600) for c in v3.recipe_candidates.values()] == [
        Recipe("R1", 1.0), Recipe("R2", 0.1), Recipe("R4", 1.0, encoder_freeze_epochs=60)]
    assert RecipeCandidate("R3", 1.0, encoder_warmup_fraction=0.1).at_cap(3).encoder_warmup_epochs == 1  # never 0
    assert protocol.sizes["v3_recipe_check"].recipe_candidates == v3.recipe_candidates


def test_the_ground_truth_arm_runs_on_four_seeds_with_the_methods_recipe(protocol, tmp_path):
    v3 = protocol.sizes["v3"]
    gt = protocol.arm("cascade_semcl_gt", v3)
    assert v3.recipe_of == {"cascade_semcl_gt": "cascade_semcl"} and gt.name not in v3.recipe_arms
    assert [seed for seed in (*v3.seeds, *v3.tuning_seeds) if v3.plans(gt, "finetune_1", seed)] == [0, 1, 2, 3]
    semcl = protocol.arm("cascade_semcl", v3)
    assert all(v3.plans(semcl, "finetune_2", seed) for seed in (*v3.seeds, *v3.tuning_seeds))
    assert v3.chosen_recipe("cascade_semcl_gt") is None and v3.recipe_for("cascade_semcl_gt", 0) is None
    files = write(tmp_path, "    recipes:\n      cascade_semcl:\n        chosen: R2\n"
                            "        validation_dice: {R1: 0.5, R2: 0.6, R4: 0.55}\n")
    mine = load_protocol(files).sizes["mine"]
    assert mine.chosen_recipe("cascade_semcl_gt") == "R2" and mine.chosen_recipe("cascade_supervised") is None
    assert mine.recipe_for("cascade_semcl_gt", 1) == mine.recipe_for("cascade_semcl", 1) == Recipe("R2", 0.1)
    # an arm that takes another's recipe has no tuning run, whatever its seeds
    assert not mine.plans(protocol.arm("cascade_semcl_gt", mine), "finetune_1", 100)


def test_the_test_size_takes_over_the_selection_but_not_its_choices(protocol):
    tiny = protocol.sizes["v3_tiny"]
    assert tiny.recipe_arms == protocol.sizes["v3"].recipe_arms and tiny.recipes == {}
    with pytest.raises(ValueError, match="seed 100 of size 'v3_tiny' is a tuning seed"):
        tiny.recipe_for("cascade_semcl", 100)
    assert tiny.recipe_for("cascade_semcl", 0) is None  # not chosen yet
    assert tiny.recipe_for("cascade_scratch", 0) is None  # chooses none


def write(tmp_path, size_entry: str, arms: str = "") -> list:
    """A protocol file with the size ``mine``: v3_tiny with a stage-2 epoch cap of 20 and ``size_entry``."""
    path = tmp_path / "mine.yaml"
    path.write_text(f"{arms}sizes:\n  mine:\n    base: v3_tiny\n    refine: {{max_epochs: 20}}\n{size_entry}",
                    encoding="utf-8")
    return [path]


def test_the_tuning_seeds_try_every_candidate_at_stage_2s_cap(tmp_path):
    size = load_protocol(write(tmp_path, "")).sizes["mine"]
    assert size.tuning_recipes() == (Recipe("R1", 1.0), Recipe("R2", 0.1), Recipe("R4", 1.0, encoder_freeze_epochs=2))
    # v3's stage-2 cap (400 epochs, section 11): R4 freezes the encoder for 40
    assert load_protocol().sizes["v3"].tuning_recipes()[-1] == Recipe("R4", 1.0, encoder_freeze_epochs=40)
    unsized = dataclasses.replace(size, refine={})
    with pytest.raises(ValueError, match="size 'mine': refine has no max_epochs"):
        unsized.tuning_recipes()


@pytest.mark.parametrize("entry, message", [
    ("    recipes: {cascade_semcl: {chosen: R9, validation_dice: {R1: 0.5, R2: 0.5, R4: 0.5}}}\n",
     "recipes: cascade_semcl: an entry is {chosen: one of R1, R2, R4"),
    ("    recipes: {cascade_semcl: {chosen: R1, validation_dice: {R1: 0.5}}}\n", "each candidate"),
    ("    recipes: {cascade_scratch: {chosen: R1, validation_dice: {R1: 0.5, R2: 0.5, R4: 0.5}}}\n",
     "recipes: 'cascade_scratch' is not one of its recipe_arms"),
    ("    recipes: {cascade_semcl_gt: {chosen: R1, validation_dice: {R1: 0.5, R2: 0.5, R4: 0.5}}}\n",
     "recipes: 'cascade_semcl_gt' is not one of its recipe_arms"),
    ("    recipe_of: {cascade_semcl_gt: cascade_semcl_frozen}\n",
     "recipe_of: cascade_semcl_gt: 'cascade_semcl_frozen': a pretrained arm that chooses no recipe of its own"),
    ("    recipe_of: {cascade_supervised: cascade_semcl}\n", "recipe_of: cascade_supervised: 'cascade_semcl'"),
    ("    recipe_of: {cascade_scratch: cascade_semcl}\n", "recipe_of: cascade_scratch: 'cascade_semcl'"),
    ("    recipe_of: {cascade_nothing: cascade_semcl}\n", "unknown arm 'cascade_nothing'"),
    ("    arm_seeds: {cascade_semcl_gt: 3}\n", "arm_seeds: cascade_semcl_gt: 3 is not a list of seeds"),
    ("    arm_seeds: [cascade_semcl_gt]\n", "arm_seeds must be a mapping"),
    ("    recipe_arms: [cascade_scratch]\n", "recipe_arms: 'cascade_scratch' is not a pretrained arm"),
    ("    recipe_candidates: {R5: {encoder_lr_multiplier: -1}}\n", "recipe R5: encoder_lr_multiplier must be"),
    ("    recipe_candidates: {R5: {encoder_lr_multiplier: 1, encoder_warmup_fraction: 1.5}}\n", "below 1"),
    ("    recipe_candidates: {R5: {encoder_learning_rate: 1}}\n", "a candidate has encoder_lr_multiplier"),
    ("    oracle_arms: [scratch]\n", "oracle_arms: 'scratch' is not a cascade arm"),
    ("    tuning_seeds: [0]\n", r"tuning_seeds \[0\] are also among its seeds"),
])
def test_malformed_v3_entries_are_refused_naming_the_file(tmp_path, entry, message):
    files = write(tmp_path, entry)
    with pytest.raises(ValueError, match=message) as error:
        load_protocol(files)
    assert str(error.value).startswith(f"{files[0]}: size 'mine'")


def test_an_unknown_pool_mask_source_is_refused(tmp_path):
    files = write(tmp_path, "", arms="arms:\n  mine_gt: {stage: cascade, pool_masks: labels}\n")
    with pytest.raises(ValueError, match="protocol arm 'mine_gt': pool_masks must be one of"):
        load_protocol(files)


def test_a_recorded_choice_is_read(tmp_path):
    files = write(tmp_path, "    recipes:\n      cascade_supervised:\n        chosen: R4\n"
                            "        validation_dice: {R1: 0.5, R2: 0.55, R4: 0.6}\n")
    size = load_protocol(files).sizes["mine"]
    assert size.chosen_recipe("cascade_supervised") == "R4" and size.chosen_recipe("cascade_semcl") is None
    assert size.recipe_for("cascade_supervised", 1) == Recipe("R4", 1.0, encoder_freeze_epochs=2)


def test_the_tuning_seeds_plan_the_recipe_arms_only(tmp_path):
    """On a tuning seed: each recipe arm's candidates, their pretrainings and the stage 1 they need; no other arm."""
    from semcl_benchmark.runner import Benchmark

    protocol = load_protocol()
    tiny = protocol.sizes["v3_tiny"]
    benchmark = Benchmark(tiny, tmp_path / "results", tmp_path / "work", protocol=protocol)
    tuning = {run.key for run in benchmark.plan(list(tiny.arms), ["finetune_1"], [100], study=[])}
    stage2 = {(key.arm, key.tuning_recipe) for key in tuning if key.stage == "finetune" and key.arm != "scratch"}
    assert stage2 == {(arm, c) for arm in tiny.recipe_arms for c in tiny.recipe_candidates}
    assert {key.stage for key in tuning} == {"finetune", "predict", "pretrain"}  # no oracle test on a tuning seed
    main = {(run.key.stage, run.key.arm) for run in benchmark.plan(list(tiny.arms), ["finetune_1"], [0], study=[])}
    assert {("finetune", arm) for arm in tiny.arms} | {("oracle", arm) for arm in tiny.oracle_arms} <= main
