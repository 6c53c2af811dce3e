"""Benchmark v3's speed levers timed against v2's settings (``scripts/benchmark_cost_ratio.py levers``)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from semcl_benchmark import cost_levers
from semcl_benchmark.cost_levers import (
    EpochCalls,
    Setting,
    check_timing,
    epoch_costs,
    settings_to_time,
    summarise,
    validation_epochs,
)
from semcl_benchmark.cost_ratio import main
from semcl_benchmark.datasets import BenchmarkData
from semcl_benchmark.protocol import load_protocol
from semcl_components.bundle_runtime.overrides import check_overrides
from semcl_tools.bundle_run import bundle_command
from semcl_tools.repository import CONFIGS


def _history(train: float, validation: float, epochs: int, val_every: int, start_up: float = 5.0) -> list[dict]:
    wall, history = start_up, []
    for epoch in range(1, epochs + 1):
        validated = epoch in validation_epochs(epochs, val_every)
        wall += train + (validation if validated else 0.0)
        history.append({"epoch": epoch, "wall_time_s": wall, "mean_loss": 1.0 / epoch,
                        **({"val": {"val_mean_dice": 0.1}} if validated else {})})
    return history


def test_epoch_costs_split_training_and_validation():
    costs = epoch_costs(_history(train=0.5, validation=3.0, epochs=12, val_every=5))
    # epoch 1 (start-up) is left out: training epochs 2-4, 6-9, 11; validations after 5, 10 and the last, 12
    assert costs["train_seconds"] == pytest.approx(0.5) and costs["validation_seconds"] == pytest.approx(3.0)
    assert (costs["train_epochs"], costs["validations"]) == (8, 3)
    assert costs["losses"][:2] == [1.0, 0.5]
    with pytest.raises(ValueError, match="an epoch without validation and one with"):
        epoch_costs(_history(train=0.5, validation=3.0, epochs=3, val_every=1))


def test_timing_needs_an_epoch_with_and_one_without_validation():
    assert validation_epochs(12, 5) == [5, 10, 12] and validation_epochs(4, 10) == [4]
    check_timing(3, 3)  # epoch 2 trains only, epoch 3 validates
    check_timing(4, 10)  # one validation, after the last epoch
    for epochs, val_every in ((2, 1), (3, 2), (1, 1)):
        with pytest.raises(ValueError, match="timing needs"):
            check_timing(epochs, val_every)


def test_settings_keep_v2s_cores():
    v2, memory, threads = settings_to_time(["channels_last", "threads"], jobs=2, threads=2)
    assert (v2.threads, v2.copies, v2.channels_last) == (1, 2, False)
    assert (memory.threads, memory.copies, memory.channels_last) == (1, 2, True)
    assert (threads.threads, threads.copies) == (2, 1)  # the two cores of v2's two one-thread runs, in one run
    assert [s.name for s in settings_to_time(["threads"], jobs=1, threads=2)] == ["v2", "threads"]
    with pytest.raises(ValueError, match="v2's setting"):
        settings_to_time(["threads"], jobs=2, threads=1)
    with pytest.raises(ValueError, match="unknown lever"):
        settings_to_time(["amp"], jobs=2, threads=2)


def test_ratios_are_of_throughput_and_per_interval():
    def timed(train, validation, copies, loss):
        return {"train_seconds": train, "validation_seconds": validation, "copies": copies,
                "runs": [{"losses": [loss]}]}

    rows = {"v2": timed(1.0, 4.0, 2, 2.0), "channels_last": timed(0.8, 4.0, 2, 2.0 + 1e-7),
            "threads": timed(0.6, 2.0, 1, 2.0)}
    ratios = cost_levers._ratios(rows, v2_interval=40, intervals=[80])
    assert ratios["channels_last"]["train"] == pytest.approx(0.8)
    assert ratios["channels_last"]["epoch"] == pytest.approx((0.8 + 4.0 / 40) / (1.0 + 4.0 / 40), abs=1e-4)
    assert ratios["channels_last"]["first_epoch_loss_difference"] == pytest.approx(1e-7)
    # one run on both cores against two runs at a time: 0.6 s per epoch against 1.0 / 2
    assert ratios["threads"]["train"] == pytest.approx(1.2) and ratios["threads"]["validation"] == pytest.approx(1.0)
    assert ratios["val_interval_80"]["epoch"] == pytest.approx((1.0 + 4.0 / 80) / (1.0 + 4.0 / 40), abs=1e-4)
    summary = summarise([{"kind": "scratch", "ratios": ratios},
                         {"kind": "scratch", "ratios": {**ratios, "channels_last": {"epoch": 1.1}}}])
    lever = summary["scratch"]["channels_last"]
    assert lever["ratio_min"] < 1 < lever["ratio_max"] and not lever["cheaper_in_every_round"]
    assert lever["speedup"] == pytest.approx(1 / lever["ratio_median"], abs=1e-3)


def test_copies_run_at_once_each_in_its_folder(tmp_path, monkeypatch):
    running, peak, seen = [0], [0], []
    lock = threading.Lock()

    def fake_run(call, threads):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.append((call.overrides["output_dir"], threads))
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        copy = int(call.overrides["output_dir"].parent.name.rsplit("_", 1)[1])  # <kind>/<setting>_<copy>/eval
        return {"train_seconds": 2.0 + copy, "validation_seconds": 2.0, "losses": [1.0]}

    class Calls:
        def call(self, kind, setting, epochs, val_every, folder):
            return cost_levers.BundleCall(kind, ["train.yaml"], {"output_dir": folder / "eval"}, folder / "log")

    monkeypatch.setattr(cost_levers, "_run", fake_run)
    row = cost_levers.time_setting(Calls(), "scratch", Setting("v2", copies=2), 4, 3, tmp_path)
    assert peak[0] == 2 and len({folder for folder, _ in seen}) == 2 and {t for _, t in seen} == {1}
    assert row["copies"] == 2 and row["train_seconds"] == pytest.approx(2.5) and len(row["runs"]) == 2


def test_epoch_calls_are_v3s_two_epochs_and_valid_workflow_settings(tmp_path):
    protocol = load_protocol([])
    size = protocol.sizes["v3"]
    calls = EpochCalls(size, protocol.sizes["default"], BenchmarkData(size, tmp_path), "finetune_1", 100)
    scratch = calls.call("scratch", Setting("v2"), 12, 5, tmp_path / "s")
    cascade = calls.call("cascade_scratch", Setting("channels_last", channels_last=True), 12, 5, tmp_path / "c")
    assert scratch.configs == ["train.yaml"] and cascade.configs == ["train.yaml", "train_refine.yaml"]
    assert scratch.overrides["pixdim"] == [5.625] * 3  # stage 1's grid, resampled from the fine data at load
    assert cascade.overrides["pixdim"] == pytest.approx([2.8125] * 3)  # the data's own grid
    assert (scratch.overrides["channels_last"], cascade.overrides["channels_last"]) == ("false", "true")
    for call, own in ((scratch, size.finetune), (cascade, size.refine)):
        assert call.overrides["data_list_file_path"] == tmp_path / "datalists" / "datalist_seed100.json"
        assert (call.overrides["max_epochs"], call.overrides["val_interval"], call.overrides["early_stop_patience"]) \
            == (12, 5, 0)
        # the size's own settings over v2's (stage 2's learning rate 0.001: section 11)
        assert call.overrides["learning_rate"] == {**protocol.sizes["default"].finetune, **own}["learning_rate"]
        config = ConfigParser.load_config_files([str(CONFIGS / f) for f in call.configs])
        check_overrides(bundle_command(CONFIGS, call.configs, call.overrides), config)  # every setting is known


def test_refuses_what_cannot_be_timed(capsys):
    with pytest.raises(SystemExit):
        main(["levers", "--size", "v3_tiny", "--epochs", "2", "--val-every", "1", "--allow-dirty"])
    assert "timing needs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["levers", "--size", "v3_tiny", "--kinds", "scratch", "--epochs", "4", "4", "--allow-dirty"])
    assert "one number or one per kind (1), got 2" in capsys.readouterr().err


@pytest.mark.slow
def test_times_channels_last_against_v2_on_v3_tiny(tmp_path, capsys):
    out, protocol = tmp_path / "cost_levers.json", tmp_path / "protocol.yaml"
    # v3's data and draws on 14 small subjects, stage 2's organ crops small
    protocol.write_text("sizes:\n  levers_tiny:\n    base: v3_tiny\n    refine: {refine_crop_size: [16, 16, 16]}\n",
                        encoding="utf-8")
    # stage 2 (two input channels: the batches are really reordered), 3 epochs: epoch 2 trains, epoch 3 validates
    assert main(["levers", "--protocol", str(protocol), "--size", "levers_tiny", "--kinds", "cascade_scratch",
                 "--levers", "channels_last", "--jobs", "1", "--rounds", "1", "--epochs", "3", "--val-every", "3",
                 "--allow-dirty", "--workdir", str(tmp_path / "work"), "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert (result["size"], result["kinds"], result["epochs"], result["v2_val_interval"]) == (
        "levers_tiny", ["cascade_scratch"], {"cascade_scratch": 3}, 40)
    (row,) = result["rounds"]
    assert row["order"] == ["v2", "channels_last"] and set(row["settings"]) == {"v2", "channels_last"}
    v2, memory = row["settings"]["v2"], row["settings"]["channels_last"]
    assert memory["channels_last"] and not v2["channels_last"]
    for timed in (v2, memory):
        (run,) = timed["runs"]
        assert run["train_seconds"] > 0 and run["run_seconds"] > run["train_seconds"] and len(run["losses"]) == 3
    expected = (memory["train_seconds"] + memory["validation_seconds"] / 40) / (
        v2["train_seconds"] + v2["validation_seconds"] / 40)
    assert row["ratios"]["channels_last"]["epoch"] == pytest.approx(expected, rel=1e-3)
    # the same arithmetic in another memory order: the first epoch's mean loss equal within float rounding
    assert row["ratios"]["channels_last"]["first_epoch_loss_difference"] < 1e-5
    assert result["summary"]["cascade_scratch"]["channels_last"]["ratio_median"] == row["ratios"]["channels_last"]["epoch"]
    assert {"val_interval_20", "val_interval_80"} <= set(row["ratios"])
    assert result["code"] and result["machine"]["cores"] >= 1 and len(result["load_average"]["end"]) == 3
    assert "CacheDataset" in result["cached_deterministic_transforms"]
    assert Path(tmp_path / "work" / "cost_levers" / "cascade_scratch" / "channels_last_0" / "train.log").is_file()
    assert "speed-up against v2" in capsys.readouterr().out
