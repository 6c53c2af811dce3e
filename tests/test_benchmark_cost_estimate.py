"""The cost estimate of a benchmark size (`python -m semcl_benchmark.cost_estimate`): each planned run priced by the
measured runs of its kind, from the committed sizing and v2 result files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semcl_benchmark.cost_estimate import SIZING, V2, Measurements, estimate, kind_of, main, summary
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.run_records import RunKey, read_run_records
from semcl_benchmark.runs import Run

PROTOCOL = load_protocol()
SIZE = PROTOCOL.sizes["v3_sizing"]
STAGE2 = "cascade_scratch_crop48"


@pytest.fixture(scope="module")
def records():
    return read_run_records(SIZING), read_run_records(V2)


def run(stage: str, arm: str, setting: str | None, seed: int = 0, **config) -> Run:
    return Run(RunKey(stage, arm, setting, seed).name, {"stage": stage, "arm": arm, "setting": setting, "seed": seed,
                                                        **config})


def cpu(records, prefix: str) -> float:
    """The mean CPU seconds (training and test) of the committed runs whose name starts with ``prefix``."""
    found = [r.to_json()["cost"] for r in records if r.key.name.startswith(prefix)]
    assert found, prefix
    return float(np.mean([sum(part["cpu_seconds"] for part in cost.values()) for cost in found]))


def test_each_kind_costs_the_mean_of_its_measured_runs(records):
    sizing, v2 = records
    planned = [(run("finetune", "scratch", "finetune_1"), False), (run("finetune", "scratch", "finetune_1", 1), False),
               (run("finetune", "scratch", "finetune_all"), False), (run("predict", "scratch", "finetune_2"), False),
               (run("finetune", "cascade_semcl", "finetune_2", pipeline_stage=2), False),
               (run("oracle", "cascade_scratch", "finetune_2"), False),
               (run("pretrain", "cascade_semcl", "finetune_1"), False),
               (run("finetune", "supervised", "finetune_1"), True)]
    costs = {c.kind: c for c in estimate(planned, Measurements(sizing, v2, STAGE2, None, 360), PROTOCOL, SIZE)}
    assert costs["stage 1 finetune_1"].runs == 2
    assert costs["stage 1 finetune_1"].seconds == pytest.approx(cpu(sizing, "finetune__scratch__finetune_1__seed"))
    v2_all = [r.result.cpu_seconds() for r in v2 if r.key.name.startswith("finetune__scratch__finetune_all__")]
    assert len(v2_all) == 3 and costs["stage 1 finetune_all"].seconds == pytest.approx(np.mean(v2_all))
    assert costs["stage 1 finetune_all"].source.startswith("v2: ")  # the sizing ran no finetune_all
    stage2 = f"finetune__{STAGE2}__finetune_2__seed"
    assert costs["stage 2 finetune_2"].seconds == pytest.approx(cpu(sizing, stage2)) and stage2 in costs[
        "stage 2 finetune_2"].source  # every stage-2 arm at the measured candidate's cost
    assert costs["oracle"].seconds == pytest.approx(cpu(sizing, "oracle__"))
    v2_supervised = [r.result.cpu_seconds() for r in v2 if r.key.stage == "finetune" and r.key.arm == "supervised"
                     and r.key.setting == "finetune_1" and not r.key.probe]
    assert costs["v2 finetune supervised finetune_1"].seconds == pytest.approx(np.mean(v2_supervised))
    contrastive = costs["contrastive pretraining"]  # no supervised pretraining measured yet, no ratio
    assert contrastive.seconds is None and contrastive.total is None
    total = summary(list(costs.values()), jobs=2, sitting_hours=2.5)
    measured = sum(c.total for c in costs.values() if c.total is not None)
    assert total["cpu_seconds"] == round(measured) and total["runs_not_measured"] == 1 and total["runs"] == 8
    assert total["wall_hours"] == round(measured / 2 / 3600, 1)


def test_a_pretraining_is_priced_per_step_and_the_contrastive_one_by_its_ratio(records):
    sizing, v2 = records
    supervised = next(r for r in sizing if r.key.stage == "finetune" and r.key.arm == STAGE2)
    measured = [supervised.__class__(**{**supervised.__dict__, "key": RunKey("pretrain", "cascade_supervised",
                                                                             "finetune_1", 100)})]
    measurements = Measurements(measured, v2, STAGE2, 1.5, 300)
    per_step = supervised.result.cpu_seconds() / supervised.budget.steps
    assert measurements.cost(("supervised pretraining",))[0] == pytest.approx(per_step * 300)
    assert measurements.cost(("contrastive pretraining",))[0] == pytest.approx(per_step * 1.5 * 300)
    assert kind_of(run("pretrain", "cascade_supervised", "finetune_1"), False, PROTOCOL, SIZE) == (
        "supervised pretraining",)


def test_the_command_prices_a_plannable_size_and_writes_its_estimate(tmp_path, capsys, unsized_protocol):
    out = tmp_path / "cost_estimate.json"
    assert main(["--size", "v3_sizing", "--stage2-arm", STAGE2, "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["size"] == "v3_sizing" and written["runs"] == sum(k["runs"] for k in written["kinds"])
    assert "| stage 1 finetune_1 |" in capsys.readouterr().out
    # a cascade size without stage-2 settings: nothing to plan
    assert main(["--size", "unsized", "--protocol", str(unsized_protocol), "--stage2-arm", STAGE2]) == 2
    assert "size 'unsized' has no refine, pretrain settings yet" in capsys.readouterr().err


def test_candidate_settings_are_priced_from_a_protocol_file(tmp_path, capsys):
    """A size of a ``--protocol`` file (the cost of settings before they are written into protocol.yaml)."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("sizes:\n  mine: {base: v3_sizing, arms: [scratch], oracle_arms: [], settings: [finetune_2], seeds: [0]}\n",
                    encoding="utf-8")
    out = tmp_path / "mine.json"
    assert main(["--size", "mine", "--protocol", str(mine), "--stage2-arm", STAGE2, "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [(k["kind"], k["runs"]) for k in written["kinds"]] == [("stage 1 finetune_2", 3)]  # seed 0, tuning 100, 101
    assert main(["--size", "nothing", "--protocol", str(mine), "--stage2-arm", STAGE2]) == 2


def test_m5s_file_prices_the_pretrainings_until_a_supervised_one_is_measured(records):
    sizing, v2 = records
    step_cost = {"arms": ["cascade_semcl", "cascade_supervised_crop48_lr001"], "ratio": 0.5,
                 "measured": {"cascade_semcl": {"cpu_seconds_per_step": 6.0},
                              "cascade_supervised_crop48_lr001": {"cpu_seconds_per_step": 12.0}}}
    without = [r for r in sizing if r.key.stage != "pretrain"]
    measurements = Measurements(without, v2, STAGE2, None, 100, step_cost)
    assert measurements.cost(("supervised pretraining",))[0] == pytest.approx(1200.0)
    assert measurements.cost(("contrastive pretraining",))[0] == pytest.approx(600.0)  # the file's ratio
    assert Measurements(without, v2, STAGE2, 0.25, 100, step_cost).cost(("contrastive pretraining",))[0] == (
        pytest.approx(300.0))  # a ratio given on the command line wins


def test_a_part_of_the_plan_and_what_remains_of_it_are_priced(tmp_path):
    """``--arms``/``--seeds`` price what scripts/benchmark.py would plan with them; ``--remaining`` leaves out the runs
    whose committed result file holds their configuration (the sizing's stage 1 on both tuning seeds)."""
    def kinds(*options: str) -> dict[str, int]:
        out = tmp_path / "part.json"
        assert main(["--size", "v3_sizing", "--stage2-arm", STAGE2, "--out", str(out), *options]) == 0
        return {k["kind"]: k["runs"] for k in json.loads(out.read_text(encoding="utf-8"))["kinds"]}

    assert kinds("--arms", "scratch", "--seeds", "100", "101") == {"stage 1 finetune_1": 2, "stage 1 finetune_2": 2}
    every = kinds("--arms", "cascade_scratch", "--seeds", "100", "101")
    assert every["stage 1 finetune_1"] == every["predict"] // 2 == every["oracle"] // 2 == 2  # what stage 2 needs
    left = kinds("--arms", "cascade_scratch", "--seeds", "100", "101", "--remaining")
    assert "stage 1 finetune_1" not in left and "stage 1 finetune_2" not in left  # committed: nothing left to run
    assert sum(left.values()) < sum(every.values())


def test_the_recipe_check_is_priced_unless_left_out(tmp_path):
    candidate = SIZING / "cost_candidate.yaml"  # v3 with candidate settings: it plans v3's recipe check too
    out = tmp_path / "v3.json"
    assert main(["--size", "v3_candidate", "--protocol", str(candidate), "--stage2-arm", STAGE2, "--no-recipe-check",
                 "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["recipe_check"] is False and not [k for k in written["kinds"] if k["kind"].startswith("v2 ")]
    assert {"stage 2 finetune_1", "contrastive pretraining", "supervised pretraining"} <= {
        k["kind"] for k in written["kinds"]}
