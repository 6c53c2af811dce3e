"""Benchmark v3's stages (docs/PROTOCOL_v3.md, section 13): scoring at the fine grid, stage 1's predictions and their
SHA-256, the plan's units per seed and setting with their dependencies, and the primary arms end to end."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from semcl_benchmark.cascade_stages import predictions_datalist
from semcl_benchmark.fine_grid import case_dice, nearest_onto
from semcl_benchmark.plan import BUILT_STAGES, Planner, Workspace
from semcl_benchmark.protocol import load_protocol


def test_a_coarse_label_map_lands_on_the_nearest_fine_voxels():
    # coarse voxels of 3 mm (centres at 0, 3, 6, 9 mm), fine voxels of 1 mm from 1 mm: no fine centre is equidistant
    coarse = torch.arange(4 * 2 * 2, dtype=torch.float32).reshape(1, 4, 2, 2) % 5
    coarse_affine = torch.diag(torch.tensor([3.0, 3.0, 3.0, 1.0]))
    fine_affine = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    fine_affine[:3, 3] = 1.0
    reference = MetaTensor(torch.zeros(1, 9, 4, 4), affine=fine_affine)
    moved = nearest_onto(MetaTensor(coarse, affine=coarse_affine), reference)
    assert moved.shape == (1, 9, 4, 4)
    nearest = [int(np.rint((j + 1) / 3)) for j in range(9)]  # fine voxel j is at j + 1 mm
    for i in range(9):
        for j in range(4):
            for k in range(4):
                ci, cj, ck = nearest[i], nearest[j], nearest[k]
                inside = ci < 4 and cj < 2 and ck < 2
                expected = coarse[0, ci, cj, ck] if inside else 0  # beyond the coarse extent: background
                assert moved[0, i, j, k] == expected, (i, j, k)
    assert torch.allclose(moved.affine.float(), fine_affine)


def test_organ_dice_leaves_absent_organs_out():
    label = torch.zeros(1, 4, 4, 4)
    label[0, :2] = 1  # organ 1: 32 voxels; organ 2 absent
    prediction = torch.zeros(1, 4, 4, 4)
    prediction[0, :1] = 1  # 16 of them
    prediction[0, 3] = 2  # organ 2 predicted where the label has none: still left out
    dice = case_dice(prediction, label, num_classes=3)
    assert dice[0] == pytest.approx(2 * 16 / (32 + 16), abs=1e-6) and dice[1] is None


PROTOCOL = load_protocol()
TINY = PROTOCOL.sizes["v3_tiny"]
PRIMARY = ["scratch", "cascade_scratch", "cascade_semcl", "cascade_semcl_frozen"]


def planned(tmp_path: Path, arms: list[str], settings: list[str], seeds: list[int], size=TINY, protocol=PROTOCOL):
    planner = Planner(protocol, size, Workspace(tmp_path), device="cpu")
    return planner, {run.key.name: run for run in planner.plan(arms, settings, seeds)}


def test_the_predictions_datalist_points_the_pool_and_priors_at_stage_1s_files():
    def entry(case: str) -> dict:
        return {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}

    datalist = {"pretrain": [entry("p0")], "finetune_1": [entry("l0")], "validation": [entry("v0")],
                "test": [entry("t0"), entry("t1")], "draw": {"labelled": ["l0"]}}
    files = {split: {case: Path(f"/pred/{case}.nii.gz") for case in cases}
             for split, cases in (("pretrain", ["p0"]), ("validation", ["v0"]), ("test", ["t0", "t1"]))}
    written = predictions_datalist(datalist, files)
    assert written["pretrain"] == [{"image": "./imagesTr/p0.nii.gz", "label": "/pred/p0.nii.gz",
                                    "prior": "/pred/p0.nii.gz"}]  # the pool's masks and targets: stage 1's
    assert written["test"][1] == {**entry("t1"), "prior": "/pred/t1.nii.gz"}  # ground truth kept for scoring
    assert written["validation"] == [{**entry("v0"), "prior": "/pred/v0.nii.gz"}]
    assert (written["finetune_1"], written["draw"]) == (datalist["finetune_1"], datalist["draw"])
    assert "prior" not in datalist["test"][0]  # the seed's own datalist is left as it was


def test_v3_stages_are_built():
    assert {"stage1", "cascade"} <= set(BUILT_STAGES)


def test_a_unit_per_seed_and_setting_runs_after_what_it_needs(tmp_path):
    planner, runs = planned(tmp_path, [*PRIMARY, "cascade_supervised"], ["finetune_1", "finetune_2"], [0])
    for setting in ("finetune_1", "finetune_2"):
        stage1, predict = f"finetune__scratch__{setting}__seed0", f"predict__scratch__{setting}__seed0"
        semcl, supervised = f"pretrain__cascade_semcl__{setting}__seed0", f"pretrain__cascade_supervised__{setting}__seed0"
        needs = {name: sorted(str(n) for n in runs[name].needs) for name in runs if name.endswith(f"{setting}__seed0")}
        assert needs[stage1] == [] and needs[predict] == [stage1]
        assert needs[semcl] == [predict] and needs[supervised] == [predict]  # masks from this setting's stage 1
        # stage 2 after its priors and encoder, and after stage 1, whose model its test runs
        assert needs[f"finetune__cascade_scratch__{setting}__seed0"] == sorted([stage1, predict])
        assert needs[f"finetune__cascade_semcl__{setting}__seed0"] == sorted([stage1, predict, semcl])
        assert needs[f"finetune__cascade_semcl_frozen__{setting}__seed0"] == sorted([stage1, predict, semcl])
        assert needs[f"finetune__cascade_supervised__{setting}__seed0"] == sorted([stage1, predict, supervised])
    order = list(runs)  # every run is planned after the runs it needs
    assert all(order.index(str(need)) < order.index(name) for name, run in runs.items() for need in run.needs)
    planner.check(list(runs.values()))  # every workflow call valid


def test_each_stage_gets_its_grid_priors_and_encoder(tmp_path):
    planner, runs = planned(tmp_path, PRIMARY, ["finetune_1"], [0])
    calls = {name: planner.bundle_calls(run) for name, run in runs.items()}
    fine = planner.data.pixdim
    (stage1,) = calls["finetune__scratch__finetune_1__seed0"]
    assert stage1.configs == ["train.yaml"] and stage1.overrides["pixdim"] == [TINY.stage1_pixdim] * 3
    assert calls["predict__scratch__finetune_1__seed0"] == []  # in this process
    datalist = tmp_path / "predict" / "predict__scratch__finetune_1__seed0" / "datalist.json"
    (pretrain,) = calls["pretrain__cascade_semcl__finetune_1__seed0"]
    assert pretrain.overrides["data_list_file_path"] == datalist  # the pool's masks: stage 1's predictions
    assert {k: pretrain.overrides[k] for k in ("crop_mode", "embedding_mode", "object_prior")} == {
        "crop_mode": "object", "embedding_mode": "channel", "object_prior": "label"}
    steps_per_epoch = -(-TINY.draws["pool"] // TINY.pretrain["batch_size"])
    assert pretrain.overrides["max_epochs"] * steps_per_epoch >= TINY.pretrain["steps"] > (
        pretrain.overrides["max_epochs"] - 1) * steps_per_epoch
    encoder = tmp_path / "pretrain" / "pretrain__cascade_semcl__finetune_1__seed0" / "models" / "encoder.pt"
    for arm, multiplier, encoder_file in (("cascade_scratch", 1.0, ""), ("cascade_semcl_frozen", 0.0, encoder)):
        train, test = calls[f"finetune__{arm}__finetune_1__seed0"]
        assert train.configs == ["train.yaml", "train_refine.yaml"] and train.overrides["pixdim"] == fine
        assert train.overrides["validation_prior"] == "file" and train.overrides["data_list_file_path"] == datalist
        assert train.overrides["pretrained_encoder"] == encoder_file
        assert train.overrides["encoder_lr_multiplier"] == multiplier
        assert test.configs[-1] == "evaluate_cascade.yaml" and test.overrides["test_prior"] == "stage1"
        assert test.overrides["stage1_ckpt"] == stage1.overrides["ckpt_dir"] / "model.pt"
        assert test.overrides["stage1_pixdim"] == [TINY.stage1_pixdim] * 3
        # every network of both stages in channels-last order (M0: the same arithmetic, cheaper), tests included
        assert stage1.overrides["channels_last"] is train.overrides["channels_last"] is test.overrides["channels_last"]
        assert stage1.overrides["channels_last"] is True
    assert "channels_last" not in pretrain.overrides  # a contrastive pretraining: not measured, not changed


def test_a_tuning_seed_runs_every_candidate_recipe_of_a_recipe_arm(tmp_path):
    size = dataclasses.replace(TINY, recipe_arms=("cascade_semcl",))
    planner, runs = planned(tmp_path, ["cascade_scratch", "cascade_semcl"], ["finetune_1"], [100], size)
    candidates = [recipe.name for recipe in size.tuning_recipes()]
    tuning = {name: run for name, run in runs.items() if name.startswith("finetune__cascade_semcl__")}
    assert sorted(tuning) == sorted(f"finetune__cascade_semcl__finetune_1__seed100__{c}" for c in candidates)
    for recipe in size.tuning_recipes():  # each with its candidate's settings, from the one pretraining
        run = tuning[f"finetune__cascade_semcl__finetune_1__seed100__{recipe.name}"]
        assert run.config["recipe"] == recipe.to_json() and run.config["tuning_recipe"] == recipe.name
        assert [str(n) for n in run.needs][-1] == "pretrain__cascade_semcl__finetune_1__seed100"
        (train, _) = planner.bundle_calls(run)[:2]
        assert train.overrides["encoder_lr_multiplier"] == recipe.encoder_lr_multiplier
        assert train.overrides.get("encoder_freeze_epochs", 0) == recipe.encoder_freeze_epochs
    assert "finetune__cascade_scratch__finetune_1__seed100" not in runs  # a tuning seed runs recipe arms only
    _, main = planned(tmp_path, ["cascade_scratch"], ["finetune_1"], [0], size)
    assert main["finetune__cascade_scratch__finetune_1__seed0"].config["recipe"]["name"] == "R1"  # random init: R1
    assert "oracle__cascade_semcl__finetune_1__seed100" not in runs  # the tuning runs are not tested on oracle priors


def test_oracle_tests_and_ground_truth_pools_are_planned(tmp_path):
    extra = tmp_path / "protocol.yaml"
    extra.write_text("arms:\n  gt_masks: {stage: cascade, mask_mode: exact, embedding_mode: channel, crop_mode: object,"
                     " object_prior: label, pool_masks: ground_truth}\n", encoding="utf-8")
    protocol = load_protocol([extra])
    size = dataclasses.replace(TINY, oracle_arms=("cascade_scratch",))
    planner, runs = planned(tmp_path, ["cascade_scratch", "gt_masks"], ["finetune_1", "finetune_2"], [1], size, protocol)
    assert [str(n) for n in runs["oracle__cascade_scratch__finetune_2__seed1"].needs] == [
        "finetune__cascade_scratch__finetune_2__seed1"]
    (oracle,) = planner.bundle_calls(runs["oracle__cascade_scratch__finetune_2__seed1"])
    assert oracle.overrides["test_prior"] == "oracle"
    assert oracle.overrides["ckpt_dir"] == tmp_path / "finetune" / "finetune__cascade_scratch__finetune_2__seed1" / "models"
    assert "oracle__gt_masks__finetune_1__seed1" not in runs
    assert runs["pretrain__gt_masks__seed1"].needs == []  # once per seed, from the ground truth
    (pretrain,) = planner.bundle_calls(runs["pretrain__gt_masks__seed1"])
    assert pretrain.overrides["data_list_file_path"] == planner.data.datalist_file(1)


def test_a_stage_2_network_is_tested_with_the_crops_it_was_trained_on(tmp_path):
    # an arm with crops of its own (v3_sizing's candidates): its cascade tests, oracle included, read with them too
    protocol = load_protocol()
    assert protocol.arms["cascade_scratch_crop48"].finetune == {"refine_crop_size": [48, 48, 48]}
    size = dataclasses.replace(TINY, oracle_arms=("cascade_scratch_crop48",))
    planner, runs = planned(tmp_path, ["cascade_scratch_crop48"], ["finetune_1"], [0], size, protocol)
    train, test = planner.bundle_calls(runs["finetune__cascade_scratch_crop48__finetune_1__seed0"])
    (oracle,) = planner.bundle_calls(runs["oracle__cascade_scratch_crop48__finetune_1__seed0"])
    assert TINY.refine["refine_crop_size"] != [48, 48, 48]
    assert train.overrides["refine_crop_size"] == test.overrides["refine_crop_size"] == [48, 48, 48]
    assert oracle.overrides["refine_crop_size"] == [48, 48, 48]


@pytest.mark.slow
def test_the_primary_arms_run_end_to_end_and_resume(tmp_path):
    """v3_tiny's primary arms at 1 labelled volume, seed 0, through scripts/benchmark.py (about 2 minutes)."""
    import nibabel as nib
    from conftest import run_captured

    from semcl_benchmark.run_records import read_run_records
    from semcl_tools.hashing import file_sha256

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    results, work = tmp_path / "results", tmp_path / "work"
    chosen = tmp_path / "chosen.yaml"  # a main seed's run of a recipe arm needs its chosen recipe (the tuning's)
    dice = "{R1: 0.1, R2: 0.2, R4: 0.1}"
    chosen.write_text(f"sizes:\n  v3_tiny_chosen:\n    base: v3_tiny\n    recipes: {{cascade_semcl: {{chosen: R2, "
                      f"validation_dice: {dice}}}}}\n", encoding="utf-8")
    command = [sys.executable, script, "--size", "v3_tiny_chosen", "--protocol", chosen, "--arms", *PRIMARY,
               "--settings", "finetune_1", "--seeds", "0", "--results", results, "--workdir", work, "--allow-dirty"]
    first = run_captured(command, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    oracles = [f"oracle__{arm}__finetune_1__seed0" for arm in TINY.oracle_arms if arm in PRIMARY]
    names = ["finetune__scratch__finetune_1__seed0", "predict__scratch__finetune_1__seed0",
             "pretrain__cascade_semcl__finetune_1__seed0",
             *(f"finetune__{arm}__finetune_1__seed0" for arm in PRIMARY[1:]), *oracles]
    assert sorted(p.stem for p in results.glob("*.json")) == sorted(names), first.stdout[-3000:]
    records = {record.key.name: record for record in read_run_records(results)}  # every file a valid record
    files = {name: json.loads((results / f"{name}.json").read_text(encoding="utf-8")) for name in names}
    fine, coarse = [11.25] * 3, [TINY.stage1_pixdim] * 3

    stage1 = files["finetune__scratch__finetune_1__seed0"]
    assert (stage1["pipeline_stage"], stage1["grids"]) == (1, {"training_pixdim": coarse, "scoring_pixdim": fine})
    test = stage1["test"]
    assert len(test["cases"]) == TINY.draws["test"] and len(test["classes"]) == 8
    assert all(v is None or 0 <= v <= 1 for row in test["dice"] for v in row)
    assert records["finetune__scratch__finetune_1__seed0"].draw.test == tuple(c.split(".")[0] for c in test["cases"])

    predictions = files["predict__scratch__finetune_1__seed0"]["predictions"]
    cascade_way = files["predict__scratch__finetune_1__seed0"]["test"]  # stage 1 scored the cascade's way
    assert sorted(cascade_way["cases"]) == sorted(predictions["test"]) and len(cascade_way["dice"][0]) == 8
    datalist = json.loads((work / "datalists" / "datalist_seed0.json").read_text(encoding="utf-8"))
    assert {split: len(cases) for split, cases in predictions.items()} == {
        split: len(datalist[split]) for split in ("pretrain", "validation", "test")}
    for split, cases in predictions.items():
        labels = {Path(e["label"]).name.split(".")[0]: work / "data" / e["label"] for e in datalist[split]}
        for case, written in cases.items():
            assert file_sha256(Path(written["file"])) == written["sha256"]
            prediction, label = nib.load(written["file"]), nib.load(labels[case])
            assert prediction.shape == label.shape and np.allclose(prediction.affine, label.affine)
            assert set(np.unique(np.asarray(prediction.dataobj))) <= set(range(9))

    semcl_encoder = work / "pretrain" / "pretrain__cascade_semcl__finetune_1__seed0" / "models" / "encoder.pt"
    for arm in PRIMARY[1:]:
        result = files[f"finetune__{arm}__finetune_1__seed0"]
        assert (result["pipeline_stage"], result["grids"]) == (2, {"training_pixdim": fine, "scoring_pixdim": fine})
        assert len(result["test"]["cases"]) == TINY.draws["test"]
        for use in ("validation", "test"):  # the priors are stage 1's files, each as the predict run hashed it
            prior = result["priors"][use]
            assert prior["stage1_run"] == "finetune__scratch__finetune_1__seed0"
            assert prior["sha256"] == {case: p["sha256"] for case, p in predictions[use].items()}
        encoder = result["encoder"]
        if arm == "cascade_scratch":
            assert encoder is None and result["recipe"]["name"] == "R1"
        else:
            assert encoder["sha256"] == file_sha256(semcl_encoder) and encoder["loaded_fraction"] == 1.0
    multipliers = {arm: files[f"finetune__{arm}__finetune_1__seed0"]["config"]["finetune"]["encoder_lr_multiplier"]
                   for arm in ("cascade_semcl", "cascade_semcl_frozen")}
    assert multipliers == {"cascade_semcl": 0.1, "cascade_semcl_frozen": 0.0}  # R2, and frozen
    assert files["finetune__cascade_semcl__finetune_1__seed0"]["recipe"]["name"] == "R2"
    for name in oracles:
        assert files[name]["priors"]["test"]["source"] == "oracle" and len(files[name]["test"]["dice"]) == 4

    second = run_captured(command, cwd=tmp_path)  # every run finished: nothing is redone
    assert second.returncode == 0, second.stdout[-3000:]
    assert f"{len(names)} runs planned, {len(names)} finished already, 0 to do now" in second.stdout

    # M5: both pretrainings' steps timed on the benchmark's own calls, beside its folders and never in them
    from semcl_benchmark.step_cost import main as step_cost

    before = file_sha256(semcl_encoder)
    out = tmp_path / "step_cost.json"
    assert step_cost(["--size", "v3_tiny", "--seed", "0", "--workdir", str(work), "--epochs", "1", "3",
                      "--out", str(out)]) == 0
    measured = json.loads(out.read_text(encoding="utf-8"))
    for arm in ("cascade_semcl", "cascade_supervised"):
        short, long = measured["measured"][arm]["runs"]
        assert (short["epochs"], long["epochs"], long["steps"]) == (1, 3, 3)  # a pool of 2 in batches of 2
        assert measured["measured"][arm]["cpu_seconds_per_step"] == pytest.approx(
            (long["cpu_seconds"] - short["cpu_seconds"]) / 2, abs=1e-3)
    assert measured["ratio"] == pytest.approx(measured["measured"]["cascade_semcl"]["cpu_seconds_per_step"]
                                              / measured["measured"]["cascade_supervised"]["cpu_seconds_per_step"],
                                              rel=1e-2)
    assert file_sha256(semcl_encoder) == before and not (work / "step_cost" / "cascade_semcl").exists()
