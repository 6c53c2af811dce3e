"""Run records of schema 4 (semcl_benchmark.run_records; docs/PROTOCOL_v3.md, section 9): the keys of v3's runs, the
pipeline's fields through a file and back, the pretraining's loss slope, schema-3 files still read, and malformed
pipeline fields refused naming the file. No workflow runs."""

from __future__ import annotations

import json

import pytest

from semcl_benchmark.run_records import (
    SCHEMA_VERSION,
    Draw,
    Grids,
    Pipeline,
    PretrainingProgress,
    PriorSource,
    Provenance,
    Recipe,
    RunKey,
    RunRecord,
    RunRecordError,
    RunSettings,
    read_run_record,
    write_run_record,
)

STAGE1 = "finetune__scratch__finetune_1__seed0"


@pytest.mark.parametrize("key, name", [
    (RunKey("finetune", "cascade_semcl", "finetune_1", 100, tuning_recipe="R2"),
     "finetune__cascade_semcl__finetune_1__seed100__R2"),
    (RunKey("finetune", "cascade_semcl", "finetune_2", 101, probe=True, tuning_recipe="R4"),
     "finetune__cascade_semcl__finetune_2__seed101__R4__probe"),
    (RunKey("pretrain", "cascade_semcl", "finetune_1", 3), "pretrain__cascade_semcl__finetune_1__seed3"),
    (RunKey("pretrain", "cascade_semcl_gt", None, 3), "pretrain__cascade_semcl_gt__seed3"),
    (RunKey("predict", "scratch", "finetune_2", 7), "predict__scratch__finetune_2__seed7"),
    (RunKey("oracle", "cascade_scratch", "finetune_1", 0), "oracle__cascade_scratch__finetune_1__seed0"),
])
def test_v3_keys_are_named_and_parsed_back(key, name):
    assert key.name == name and RunKey.parse(name) == key


@pytest.mark.parametrize("make, message", [
    (lambda: RunKey("pretrain", "cascade_semcl", None, 0, tuning_recipe="R1"), "has no tuning recipe"),
    (lambda: RunKey("finetune", "cascade_semcl", "finetune_1", 0, tuning_recipe="seed1"), "ambiguous"),
    (lambda: RunKey("finetune", "cascade_semcl", "finetune_1", 0, tuning_recipe="probe"), "ambiguous"),
    (lambda: RunKey("predict", "scratch", None, 0), "needs a labelled setting"),
    (lambda: RunKey.parse("embedding__scratch__finetune_1__seed0"), "no run key"),
])
def test_keys_that_would_be_ambiguous_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_v3_workflow_stage_in_a_configuration_keys_a_finetune_run():
    config = {"stage": "cascade", "arm": "cascade_semcl", "setting": "finetune_1", "seed": 100, "tuning_recipe": "R3"}
    assert RunKey.of_config(config).name == "finetune__cascade_semcl__finetune_1__seed100__R3"
    assert RunKey.of_config({**config, "stage": "predict"}).stage == "predict"


def prediction_files(tmp_path, cases=("phantom_071", "phantom_090")):
    files = []
    for index, case in enumerate(cases):
        path = tmp_path / f"{case}.nii.gz"
        path.write_bytes(bytes([index]) * 10)
        files.append(path)
    return files


def cascade_record(tmp_path, seed: int = 0, **pipeline) -> RunRecord:
    """A stage-2 fine-tuning run of a tuning seed with every pipeline field."""
    config = {"stage": "cascade", "arm": "cascade_semcl", "setting": "finetune_1", "seed": seed, "probe": False,
              "tuning_recipe": "R3", "refine": {"max_epochs": 40}}
    priors = PriorSource.of_files(STAGE1, prediction_files(tmp_path))
    fields = {"pipeline_stage": 2,
              "grids": {"training_pixdim": [2.8125] * 3, "scoring_pixdim": [2.8125] * 3},
              "recipe": Recipe("R3", 1.0, encoder_warmup_epochs=4).to_json(),
              "priors": {"training": {"source": "simulated"}, "validation": priors.to_json(),
                         "test": priors.to_json()}}
    values = {"stage": "cascade", "epochs": 40, "steps_per_epoch": 3, "best_metric": 0.7, "best_metric_epoch": 20,
              "budget": {"max_epochs": [40], "capped_while_improving": False},
              "test": {"cases": ["c1.nii.gz"], "classes": ["liver", "pancreas"], "dice": [[0.9, 0.5]]},
              **fields, **pipeline}
    draw = Draw(("a",), ("p1",), ("v1",), ("c1",), phases={"a": "native", "p1": "arterial", "v1": "native",
                                                           "c1": "delayed"})
    provenance = Provenance("abc123", False, {"cpu": "Intel(R) Xeon(R) CPU @ 2.20GHz"}, "2026-12-07 19:00:00", 9.0)
    return RunRecord.of_run(RunSettings(config, "0123456789abcdef"), draw, values, provenance)


def test_a_schema_4_record_survives_its_file_with_the_pipelines_fields(tmp_path):
    record = cascade_record(tmp_path)
    path = tmp_path / f"{record.key.name}.json"
    write_run_record(record, path)
    assert read_run_record(path) == record and record.schema_version == SCHEMA_VERSION == 4
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["key"] == "finetune__cascade_semcl__finetune_1__seed0__R3" and written["pipeline_stage"] == 2
    assert written["recipe"] == {"name": "R3", "encoder_lr_multiplier": 1.0, "encoder_warmup_epochs": 4,
                                 "encoder_freeze_epochs": 0}
    assert written["priors"]["validation"]["stage1_run"] == STAGE1
    assert sorted(written["priors"]["test"]["sha256"]) == ["phantom_071", "phantom_090"]
    assert written["priors"]["training"] == {"source": "simulated", "stage1_run": None, "sha256": {}}
    assert written["draw"]["phases"]["c1"] == "delayed" and written["pretraining"] is None
    pipeline = read_run_record(path).pipeline
    assert pipeline.grids == Grids((2.8125,) * 3, (2.8125,) * 3) and pipeline.recipe.encoder_warmup_epochs == 4
    assert "recipe" not in record.result.values and "grids" not in record.result.values  # record fields, not values


def test_the_prior_files_hashes_change_with_their_bytes(tmp_path):
    (first, second) = prediction_files(tmp_path)
    before = PriorSource.of_files(STAGE1, [first, second]).sha256
    second.write_bytes(b"another prediction")
    after = PriorSource.of_files(STAGE1, [first, second]).sha256
    assert before["phantom_071"] == after["phantom_071"] and before["phantom_090"] != after["phantom_090"]


def test_a_records_row_holds_the_pipelines_fields(tmp_path):
    row = cascade_record(tmp_path, seed=5).as_row()
    assert (row["tuning_recipe"], row["recipe"], row["pipeline_stage"]) == ("R3", "R3", 2)
    assert (row["training_prior"], row["validation_prior"], row["test_prior"]) == ("simulated", "stage1", "stage1")
    assert row["scoring_pixdim"] == (2.8125,) * 3 and row["cpu"].startswith("Intel")
    assert row["pretraining_steps"] is None and row["steps"] == 120


def test_a_schema_3_file_still_reads_without_the_pipelines_fields(tmp_path):
    record = cascade_record(tmp_path)
    data = record.to_json()
    for name in ("pipeline_stage", "grids", "recipe", "priors", "pretraining"):
        data.pop(name)
    path = tmp_path / f"{record.key.name}.json"
    path.write_text(json.dumps({**data, "schema_version": 3}), encoding="utf-8")
    old = read_run_record(path)
    assert old.schema_version == 3 and old.pipeline == Pipeline() and old.draw == record.draw
    assert old.result.test == record.result.test
    assert "pipeline_stage" not in old.to_json()  # a version-3 record's content is its file's
    with pytest.raises(ValueError, match="never rewritten"):
        write_run_record(old, tmp_path / "again.json")


@pytest.mark.parametrize("change, message", [
    ({"pipeline_stage": 3}, "'pipeline_stage' must be 1 or 2"),
    ({"grids": {"training_pixdim": [2.8, 2.8], "scoring_pixdim": [2.8] * 3}}, "training_pixdim must be 3 spacings"),
    ({"recipe": {"name": "R2", "encoder_lr_multiplier": -0.1}}, "encoder_lr_multiplier must be >= 0"),
    ({"recipe": {"name": "R4", "encoder_lr_multiplier": 1.0, "encoder_freeze_epochs": 2.5}}, "whole number"),
    ({"priors": {"pool": {"source": "simulated"}}}, "'priors' must map some of training, validation, test"),
    ({"priors": {"test": {"source": "stage1", "stage1_run": STAGE1}}}, "SHA-256 by case id"),
    ({"priors": {"test": {"source": "stage1", "stage1_run": "scratch", "sha256": {"a": "0" * 64}}}}, "no run key"),
    ({"priors": {"test": {"source": "oracle", "stage1_run": STAGE1}}}, "oracle priors have no stage-1 run"),
    ({"priors": {"test": {"source": "labels"}}}, "is not one of stage1, oracle, simulated, ground_truth"),
    ({"priors": {"training": {"source": "ground_truth", "sha256": {"a": "0" * 64}}}}, "ground_truth priors have no"),
    ({"pretraining": {"steps": "many"}}, "must hold the optimiser steps"),
])
def test_malformed_pipeline_fields_are_refused_naming_the_file(tmp_path, change, message):
    data = {**cascade_record(tmp_path).to_json(), **change}
    path = tmp_path / "finetune__cascade_semcl__finetune_1__seed0__R3.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RunRecordError, match=message) as error:
        read_run_record(path)
    assert str(error.value).startswith(f"{path}: ")
    with pytest.raises(RunRecordError, match=message):  # and never written in the first place
        cascade_record(tmp_path, **change)


def history(losses, steps_per_epoch=10):
    return [{"epoch": e + 1, "iteration": (e + 1) * steps_per_epoch, "mean_loss": loss}
            for e, loss in enumerate(losses)]


@pytest.mark.parametrize("losses, fall, falling", [
    # 10 epochs of 10 steps: the last 20% of the 100 steps start after step 80 (epoch 8's loss) and end at epoch 10's
    ([5, 4, 3, 2, 1.5, 1.2, 1.1, 1.0, 0.95, 0.90], 0.10, True),
    ([5, 4, 3, 2, 1.5, 1.2, 1.1, 1.0, 0.99, 0.97], 0.03, False),
    ([5, 4, 3, 2, 1.5, 1.2, 1.1, 1.0, 1.01, 1.02], -0.02, False),  # rising at the end: not falling
])
def test_the_pretrainings_loss_slope_follows_the_protocols_rule(losses, fall, falling):
    progress = PretrainingProgress.of_history(history(losses))
    assert progress.steps == 100 and progress.loss_fall == pytest.approx(fall) and progress.still_falling is falling


def test_a_history_too_short_or_without_loss_has_steps_only():
    assert PretrainingProgress.of_history(history([3.0])) == PretrainingProgress(10)
    assert PretrainingProgress.of_history([{"epoch": 1, "iteration": 6}, {"epoch": 2, "iteration": 12}]) == (
        PretrainingProgress(12))
    assert PretrainingProgress.of_history([]) is None


def test_a_pretraining_record_gets_its_progress_from_its_history_unless_its_stage_gave_one():
    config = {"stage": "pretrain", "arm": "cascade_semcl", "setting": "finetune_1", "seed": 0}
    values = {"stage": "pretrain", "summary": {"epochs_completed": 10, "max_epochs": 10},
              "history": history([5, 4, 3, 2, 1.5, 1.2, 1.1, 1.0, 0.95, 0.90])}
    settings, draw, provenance = RunSettings(config, "f" * 16), Draw((), ("p1",), ("v1",), ("c1",)), Provenance()
    record = RunRecord.of_run(settings, draw, values, provenance)
    assert record.key.name == "pretrain__cascade_semcl__finetune_1__seed0"
    assert record.pipeline.pretraining == PretrainingProgress(100, 0.1, True) and record.budget.steps == 100
    given = {**values, "pretraining": {"steps": 360, "loss_fall": 0.01, "still_falling": False}}
    assert RunRecord.of_run(settings, draw, given, provenance).pipeline.pretraining.steps == 360
