"""The sizing table of benchmark v3 (`python -m semcl_benchmark.sizing`): a row per run from its result file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from semcl_benchmark.sizing import main, sizing_table

SIZING = Path(__file__).resolve().parent.parent / "docs" / "results" / "benchmark" / "v3_sizing"


def test_each_run_gives_its_row_and_other_files_are_not_runs(tmp_path, capsys):
    stage1 = SIZING / "finetune__scratch__finetune_1__seed100.json"
    shutil.copy(stage1, tmp_path)
    shutil.copy(SIZING / "cost_levers.json", tmp_path)  # a measurement, not a run record
    record = json.loads(stage1.read_text(encoding="utf-8"))
    (row,) = sizing_table(tmp_path)["training"]
    seconds, epochs = record["cost"]["train"]["seconds"], record["budget"]["epochs"]
    assert row["run"] == "finetune__scratch__finetune_1__seed100" and row["epochs"] == epochs
    assert row["s per epoch"] == round(seconds / epochs, 2) and row["best epoch"] == record["budget"]["best_epoch"]
    assert row["CPU s per epoch"] == round(record["cost"]["train"]["cpu_seconds"] / epochs, 2)
    assert row["crop"] == record["config"]["finetune"]["roi_size"]  # stage 1's patches (stage 2's: its crops)
    cases = [np.mean([d for d in case if d is not None]) for case in record["test"]["dice"]]
    assert row["test Dice"] == round(float(np.mean(cases)), 4)
    assert main([str(tmp_path), "--out", str(tmp_path / "table.json")]) == 0
    assert "| finetune__scratch__finetune_1__seed100 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "table.json").read_text(encoding="utf-8"))["training"] == [row]


def test_a_supervised_pretraining_reads_its_settings_under_its_arms_own():
    from types import SimpleNamespace

    from semcl_benchmark.sizing import training_settings

    config = {"refine": {"refine_crop_size": [64, 64, 64], "learning_rate": 0.005, "batch_size": 4},
              "arm_settings": {"workflow": "train.yaml", "refine_crop_size": [48, 48, 48], "learning_rate": 0.001,
                               "finetune": {"learning_rate": 0.5}}}
    pretraining = SimpleNamespace(key=SimpleNamespace(stage="pretrain"), settings=SimpleNamespace(config=config))
    assert training_settings(pretraining) == {"refine_crop_size": [48, 48, 48], "learning_rate": 0.001,
                                              "batch_size": 4, "workflow": "train.yaml"}
    finetuning = SimpleNamespace(key=SimpleNamespace(stage="finetune"), settings=SimpleNamespace(config={
        "finetune": {"learning_rate": 0.005}}))
    assert training_settings(finetuning) == {"learning_rate": 0.005}


def test_a_supervised_pretraining_row_gives_its_steps_and_best_validation_dice():
    """M4's file (committed): its best validation Dice is in its workflow's run summary, its steps in its budget."""
    name = "pretrain__cascade_supervised_crop48_lr001__finetune_1__seed100"
    record = json.loads((SIZING / f"{name}.json").read_text(encoding="utf-8"))
    (row,) = [r for r in sizing_table(SIZING)["training"] if r["run"] == name]
    assert row["best validation Dice"] == round(record["summary"]["best_metric"], 4) is not None
    assert (row["steps"], row["best epoch"]) == (record["budget"]["steps"], record["budget"]["best_epoch"])
    assert row["CPU s per step"] == round(record["cost"]["cpu_seconds"] / record["budget"]["steps"], 2)
