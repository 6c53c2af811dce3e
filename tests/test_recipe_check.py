"""v3's v2 recipe check (size `v3_recipe_check`, docs/PROTOCOL_v3.md sections 4 and 5): v2's pretrained arms on v2's
data, each candidate recipe on the tuning seeds at v2's fine-tuning cap, the chosen one on seeds 0-3, and v2's own
runs planned exactly as before (their result files still count)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.recipes import check_records
from semcl_benchmark.runner import Benchmark
from semcl_benchmark.runs import config_hash

PROTOCOL = load_protocol()
SIZE = PROTOCOL.sizes["v3_recipe_check"]


def planned(tmp_path, size=SIZE):
    benchmark = Benchmark(size, tmp_path / "results", tmp_path / "work", protocol=PROTOCOL)
    planned = benchmark.plan(list(size.arms), list(size.settings), [0, 100], study=[])
    return benchmark, {run.key.name: run for run in planned}


def test_the_tuning_seeds_try_every_candidate_at_v2s_cap(tmp_path):
    benchmark, runs = planned(tmp_path)
    assert SIZE.finetune["max_epochs"] == 1200 and SIZE.stage1_pixdim is None  # v2's fine-tuning, v2's data
    for arm in ("supervised", "semcl_exact"):
        for setting in ("finetune_1", "finetune_2"):
            calls = {name: benchmark.planner.bundle_calls(runs[f"finetune__{arm}__{setting}__seed100__{name}"])[0]
                     for name in ("R1", "R2", "R4")}
            assert [calls[n].overrides["encoder_lr_multiplier"] for n in calls] == [1.0, 0.1, 1.0]
            assert calls["R4"].overrides["encoder_freeze_epochs"] == 120  # 10% of the 1200-epoch cap
            assert "encoder_warmup_epochs" not in calls["R1"].overrides
            assert f"finetune__{arm}__{setting}__seed100" not in runs  # a tuning seed runs candidates only
    benchmark.check(list(runs.values()))  # every call a valid workflow call


def test_a_main_seed_waits_for_its_arms_choice_then_takes_it(tmp_path):
    benchmark, runs = planned(tmp_path)
    assert runs["finetune__supervised__finetune_1__seed0"].config["recipe"] is None
    refused = {key.name for key in benchmark.refused(list(runs.values()))}
    assert "finetune__supervised__finetune_1__seed0" in refused and "finetune__semcl_exact__finetune_2__seed0" in refused
    assert not any(name.startswith(("pretrain__", "embedding__")) for name in refused)  # they need no recipe
    assert not any("seed100" in name for name in refused)
    chosen = dataclasses.replace(SIZE, recipes={"supervised": {"chosen": "R2", "validation_dice": {}}})
    benchmark, runs = planned(tmp_path / "chosen", chosen)
    run = runs["finetune__supervised__finetune_1__seed0"]
    assert run.config["recipe"]["name"] == "R2"
    assert benchmark.planner.bundle_calls(run)[0].overrides["encoder_lr_multiplier"] == 0.1
    assert "finetune__supervised__finetune_1__seed0" not in {k.name for k in benchmark.refused(list(runs.values()))}


@pytest.mark.parametrize("arm", ["supervised", "semcl_exact", "scratch"])
def test_v2s_runs_are_planned_as_before(tmp_path, arm):
    size = PROTOCOL.sizes["default"]
    benchmark = Benchmark(size, tmp_path / "results", tmp_path / "work", protocol=PROTOCOL)
    (run,) = [r for r in benchmark.plan([arm], ["finetune_1"], [0], study=[]) if r.key.name ==
              f"finetune__{arm}__finetune_1__seed0"]
    assert "recipe" not in run.config and "tuning_recipe" not in run.config  # the same configuration hash as v2's


def test_every_committed_v2_result_still_counts(tmp_path):
    size = PROTOCOL.sizes["default"]
    benchmark = Benchmark(size, tmp_path / "results", tmp_path / "work", protocol=PROTOCOL)
    folder = Path(__file__).resolve().parent.parent / "docs" / "results" / "benchmark" / "default"
    planned = benchmark.plan(list(size.arms), list(size.settings), list(size.seeds))
    recorded = {run.key.name: json.loads((folder / f"{run.key.name}.json").read_text(encoding="utf-8"))["config_hash"]
                for run in planned if (folder / f"{run.key.name}.json").is_file()}
    assert len(recorded) == 299  # v2's runs (docs/RESULTS.md)
    assert all(recorded[run.key.name] == config_hash(run.config) for run in planned if run.key.name in recorded)


def test_v3s_report_reads_the_check_and_v2s_committed_scratch_runs_of_its_seeds(tmp_path):
    """v3's ``recipe_check``: the check's runs (none in an empty folder) and v2's committed ``scratch`` fine-tuning
    runs of seeds 0-3 at 1 and 2 volumes, the probes and other seeds left out; only v3 names a check."""
    v3 = PROTOCOL.sizes["v3"]
    assert v3.recipe_check == {"size": "v3_recipe_check", "baseline_size": "default", "baseline_arm": "scratch"}
    assert PROTOCOL.sizes["v3_sizing"].recipe_check is None  # a size's own setting, not taken over by its base's
    check, records = check_records(PROTOCOL, v3, results=tmp_path / "no_runs")
    assert check is SIZE
    assert sorted(r.key.name for r in records) == sorted(
        f"finetune__scratch__{setting}__seed{seed}" for setting in ("finetune_1", "finetune_2") for seed in range(4))
    assert all(r.to_json()["test"]["dice"] for r in records)
    with pytest.raises(ValueError, match="has no recipe_check"):
        check_records(PROTOCOL, PROTOCOL.sizes["v3_sizing"])
