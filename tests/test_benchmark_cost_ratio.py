"""The paired cost measurement: an epoch of one size's fine-tuning against another's, the two timed in turn."""

from __future__ import annotations

import json

import pytest

from semcl_benchmark.cost_ratio import main, seconds_per_epoch


def test_seconds_per_epoch_between_two_validations():
    # seconds since the start: 2 s of start-up, 0.5 s per epoch, a 3 s validation every second epoch
    history = [{"epoch": e, "wall_time_s": 2.0 + 0.5 * e + 3.0 * (e // 2)} for e in range(1, 7)]
    # epochs 2 -> 6: 4 epochs, 2.0 s of training and the validations of epochs 4 and 6 (start-up and the validation
    # of epoch 2 are before it)
    assert seconds_per_epoch(history, 2, 6) == pytest.approx((2.0 + 6.0) / 4)
    with pytest.raises(ValueError, match="epochs 2 and 8"):
        seconds_per_epoch(history, 2, 8)
    with pytest.raises(ValueError, match="last after first"):
        seconds_per_epoch(history, 4, 4)


def test_refuses_a_size_against_itself_and_too_few_epochs(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--size", "quick", "--reference", "quick", "--allow-dirty", "--workdir", str(tmp_path)])
    assert stop.value.code == 2 and "a size's cost against its own means nothing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--size", "nosuch", "--reference", "v1", "--allow-dirty"])
    assert "--size nosuch: the protocol has the sizes" in capsys.readouterr().err


@pytest.mark.slow
def test_measures_two_sizes_in_turn(tmp_path, capsys):
    # two tiny sizes that differ in their crops: the ratio is of the two sizes' seconds per epoch, round by round
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("sizes:\n  quick_small_crops:\n    base: quick\n    finetune: {roi_size: [16, 16, 16]}\n")
    common = ["--protocol", str(protocol), "--size", "quick", "--reference", "quick_small_crops", "--allow-dirty",
              "--workdir", str(tmp_path / "work")]
    with pytest.raises(SystemExit):
        main([*common, "--epochs", "1"])  # the quick size validates every epoch: 2 are needed
    assert "at least 2 are needed" in capsys.readouterr().err
    out = tmp_path / "cost_ratio.json"
    assert main([*common, "--epochs", "3", "--rounds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert (result["size"], result["reference"], result["setting"], result["epochs"]) == (
        "quick", "quick_small_crops", "finetune_1", 3)
    assert result["timed_epochs"] == {"quick": [1, 3], "quick_small_crops": [1, 3]}
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    for row in result["rounds"]:
        a, b = row["quick"]["seconds_per_epoch"], row["quick_small_crops"]["seconds_per_epoch"]
        assert a > 0 and b > 0 and row["ratio"] == pytest.approx(a / b, rel=1e-3)
        assert row["quick"]["run_seconds"] > 2 * a  # the whole call, start-up included
    assert min(r["ratio"] for r in result["rounds"]) <= result["ratio_median"] <= max(r["ratio"] for r in result["rounds"])
    assert result["code"] and result["machine"]["cores"] >= 1 and len(result["load_average"]["end"]) == 3
    assert "median ratio" in capsys.readouterr().out
