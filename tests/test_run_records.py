"""Run records (semcl_benchmark.run_records): the key, a record's round trip through its file, the reader of the
committed version-2 files (the draw reconstructed from the splits), and files it refuses, naming them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from semcl_benchmark.results import results_folder
from semcl_benchmark.run_records import (
    SCHEMA_VERSION,
    Draw,
    Provenance,
    RunKey,
    RunRecord,
    RunRecordError,
    RunSettings,
    dataset_entries,
    read_run_record,
    read_run_records,
    reconstruct_draw,
    write_run_record,
)

V2 = results_folder("default")


@pytest.mark.parametrize("key", [
    RunKey("pretrain", "semcl_exact", None, 0),
    RunKey("finetune", "semcl_exact", "finetune_2", 7),
    RunKey("finetune", "scratch", "finetune_1", 1, probe=True),
    RunKey("atlas", "atlas_body_box", "finetune_all", 3),
    RunKey("embedding", "simclr", None, 12),
])
def test_a_key_is_named_as_its_result_file_and_parsed_back(key):
    assert RunKey.parse(key.name) == key and str(key) == key.name


def test_every_committed_result_file_is_named_by_its_key():
    for folder in ("v1", "default", "difficulty"):
        for path in results_folder(folder).glob("*__seed*.json"):
            assert RunKey.parse(path.stem).name == path.stem


@pytest.mark.parametrize("name", ["finetune__scratch__seed0", "pretrain__a__finetune_1__R1__seed0", "cost_ratio",
                                  "finetune__scratch__finetune_1__seedX", "pretrain__a__seed0__probe"])
def test_a_name_that_is_no_run_key_is_refused(name):
    with pytest.raises(ValueError, match="no run key|only a fine-tuning run can be a probe"):
        RunKey.parse(name)


def test_keys_sort_by_name_and_a_key_needs_its_stages_setting():
    keys = [RunKey("pretrain", "b", None, 0), RunKey("finetune", "a", "finetune_1", 1), RunKey("atlas", "c", "x", 0)]
    assert [k.name for k in sorted(keys)] == sorted(k.name for k in keys)
    with pytest.raises(ValueError, match="needs a labelled setting"):
        RunKey("finetune", "scratch", None, 0)
    with pytest.raises(ValueError, match="has no setting"):
        RunKey("embedding", "scratch", "finetune_1", 0)


def finetune_record(seed: int = 0) -> RunRecord:
    config = {"stage": "finetune", "arm": "scratch", "setting": "finetune_1", "seed": seed, "probe": False,
              "finetune": {"max_epochs": 4}}
    values = {"stage": "finetune", "epochs": 4, "steps_per_epoch": 2, "best_metric": 0.5, "best_metric_epoch": 2,
              "budget": {"max_epochs": [4], "capped_while_improving": False},
              "validation_points": [{"epoch": 2, "step": 4, "seconds": 1.5, "val_mean_dice": 0.5}],
              "test": {"cases": ["c1.nii.gz", "c2.nii.gz"], "classes": ["liver", "spleen"],
                       "dice": [[0.8, None], [0.6, 0.2]]},
              "cost": {"train": {"seconds": 3.0}, "evaluate": {"seconds": 1.0}}}
    draw = Draw(("a",), ("p1", "p2"), ("v1",), ("c1", "c2"))
    provenance = Provenance("abc123", False, {"cpu": "x"}, "2026-12-07 16:00:00", 4.5)
    return RunRecord.of_run(RunSettings(config, "0123456789abcdef"), draw, values, provenance)


def test_a_record_survives_its_file(tmp_path):
    record = finetune_record()
    path = tmp_path / f"{record.key.name}.json"
    write_run_record(record, path)
    assert read_run_record(path) == record
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["schema_version"] == SCHEMA_VERSION and written["draw"]["pool"] == ["p1", "p2"]
    assert written["budget"] == {"max_epochs": [4], "capped_while_improving": False, "epochs": 4, "steps": 8,
                                 "best_epoch": 2}


def test_a_records_row_holds_its_key_draw_budget_and_scores():
    row = finetune_record(seed=3).as_row()
    assert (row["key"], row["arm"], row["setting"], row["seed"], row["probe"]) == (
        "finetune__scratch__finetune_1__seed3", "scratch", "finetune_1", 3, False)
    assert row["labelled"] == 1 and row["pool"] == ("p1", "p2") and row["steps"] == 8 and row["max_epochs"] == 4
    assert row["mean_test_dice"] == pytest.approx((0.8 + 0.4) / 2)  # case means 0.8 and 0.4
    assert row["dice_liver"] == pytest.approx(0.7) and row["dice_spleen"] == pytest.approx(0.2)
    assert row["seconds"] == 4.0 and row["code"] == "abc123"


def test_a_version_2_record_is_never_written(tmp_path):
    old = read_run_record(next(V2.glob("embedding__scratch__seed0.json")))
    assert old.schema_version == 2
    with pytest.raises(ValueError, match="never rewritten"):
        write_run_record(old, tmp_path / "x.json")


@pytest.fixture(scope="module")
def v2_records() -> dict[str, tuple[RunRecord, dict]]:
    """Every committed v2 record with its file's content."""
    return {r.key.name: (r, json.loads((V2 / f"{r.key.name}.json").read_text(encoding="utf-8")))
            for r in read_run_records(V2)}


def test_the_v2_reader_reproduces_every_recorded_labelled_and_test_case(v2_records):
    files = sorted(p.stem for p in V2.glob("*.json"))
    assert sorted(v2_records) == files
    labelled = [(r, data) for r, data in v2_records.values() if r.key.stage in ("finetune", "atlas")]
    assert len(labelled) > 200
    for record, data in labelled:
        assert record.schema_version == 2 and record.draw.reconstructed
        assert record.draw.labelled == tuple(case["case"] for case in data["labelled_cases"])
        assert sorted(record.draw.test) == sorted(name.split(".")[0] for name in data["test"]["cases"])


def test_the_v2_reader_reconstructs_pools_and_validation_as_the_splits_define_them(v2_records):
    records = [r for r, _ in v2_records.values()]
    splits = records[0].settings.data["splits"]
    cases = [e["image"].split("/")[-1].split(".")[0] for e in dataset_entries(records[0].settings.data)]
    by_seed: dict[int, set] = {}
    for record in records:
        draw = record.draw
        assert (len(draw.pool), len(draw.validation), len(draw.test)) == (
            splits["pretraining_pool"], splits["validation"], splits["test"])
        assert not set(draw.pool) & (set(draw.validation) | set(draw.test) | set(draw.labelled))
        assert not set(draw.validation) & set(draw.test)
        by_seed.setdefault(record.key.seed, set()).add((draw.pool, draw.validation, draw.test))
    assert all(len(draws) == 1 for draws in by_seed.values())  # one pool per seed, whichever of its runs
    validations = {draws.copy().pop()[1] for draws in by_seed.values()}
    assert len(validations) == 1  # the validation set is fixed
    # the upper bound labels the whole training pool: with test and validation, the unlabelled pools are what is left
    upper = {r.key.seed: r.draw.labelled for r in records if r.key.setting == "finetune_all"}
    for seed, labelled in upper.items():
        (pool, validation, test), = by_seed[seed]
        rest = set(cases) - set(labelled) - set(validation) - set(test)
        assert set(pool) <= rest and len(rest) == len(cases) - splits["test"] - splits["validation"] - len(labelled)


def test_the_regenerated_phases_are_those_the_v2_files_recorded(v2_records):
    record = next(r for r, _ in v2_records.values())
    phases = {e["image"].split("/")[-1].split(".")[0]: e.get("contrast_phase")
              for e in dataset_entries(record.settings.data)}
    recorded = Counter()
    for _, data in v2_records.values():
        for case in data.get("labelled_cases") or []:
            assert phases[case["case"]] == case["contrast_phase"]
            recorded[case["case"]] += 1
        test = data.get("test") or {}
        for name, phase in zip(test.get("cases", []), test.get("contrast_phases") or []):
            assert phases[name.split(".")[0]] == phase
    assert len(recorded) >= 8


def test_a_v1_file_has_no_draw_to_reconstruct():
    record = read_run_record(results_folder("v1") / "finetune__scratch__finetune_1__seed0.json")
    assert record.schema_version == 2 and record.draw is None and record.budget.max_epochs == (800,)


def copy_of(name: str, tmp_path: Path, change=None) -> Path:
    data = json.loads((V2 / f"{name}.json").read_text(encoding="utf-8"))
    if change is not None:
        change(data)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("config"), "not a run record"),
    (lambda d: d["config"].update(seed=1), "is not its configuration's run"),
    (lambda d: d.pop("test"), "holds its 'test' Dice"),
    (lambda d: d["test"]["dice"].pop(), "one row of 8 values per case"),
    (lambda d: d["labelled_cases"][0].update(case="phantom_999"), "the splits draw"),
    (lambda d: d.update(schema_version=9), "schema_version 9 is not one of 3, 4"),
])
def test_a_malformed_file_is_refused_naming_it(tmp_path, change, message):
    path = copy_of("finetune__scratch__finetune_1__seed2", tmp_path, change)
    with pytest.raises(RunRecordError, match=message) as error:
        read_run_record(path)
    assert str(error.value).startswith(f"{path}: ")


def test_a_cut_file_and_a_misnamed_file_are_refused_naming_them(tmp_path):
    cut = tmp_path / "embedding__scratch__seed0.json"
    cut.write_text((V2 / cut.name).read_text(encoding="utf-8")[:200], encoding="utf-8")
    with pytest.raises(ValueError, match=f"{cut} is not valid JSON"):
        read_run_records(tmp_path)
    cut.unlink()
    misnamed = copy_of("embedding__scratch__seed1", tmp_path)
    misnamed.rename(tmp_path / "embedding__scratch__seed2.json")
    with pytest.raises(RunRecordError, match="named 'embedding__scratch__seed2' but records the run 'embedding__scr"):
        read_run_records(tmp_path)


def test_a_results_folder_reads_its_run_files_only(tmp_path):
    write_run_record(finetune_record(seed=1), tmp_path / "finetune__scratch__finetune_1__seed1.json")
    (tmp_path / "cost_ratio.json").write_text("{}", encoding="utf-8")
    (records,) = [read_run_records(tmp_path)]
    assert [r.key.name for r in records] == ["finetune__scratch__finetune_1__seed1"]


def test_the_reconstruction_refuses_phantoms_of_another_tuning():
    record = read_run_record(V2 / "pretrain__simclr__seed0.json")
    data = {**record.settings.data, "preset_fingerprint": "0000000000000000"}
    with pytest.raises(ValueError, match="preset fingerprint 0000000000000000"):
        reconstruct_draw({**record.settings.config, "data": data})


def test_the_runner_records_the_whole_draw_that_the_v2_reader_would_reconstruct(tmp_path):
    """Atlas runs (no training) at a tiny size: every file records the seed's labelled, pool, validation and test
    cases as its datalist holds them, and the schema version."""
    from dataclasses import replace

    from semcl_benchmark.protocol import load_protocol
    from semcl_benchmark.runner import Benchmark

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("sizes:\n  tiny:\n    base: quick\n    data: {preset: realistic, num: 16, size: [24, 24, 16], seed: 0}\n"
                    "    splits: {test: 4, validation: 2, training_pool: 6, pretraining_pool: 3}\n", encoding="utf-8")
    protocol = load_protocol([tiny])
    benchmark = Benchmark(protocol.sizes["tiny"], tmp_path / "results", tmp_path / "work", protocol=protocol,
                          allow_dirty=True)
    planned = benchmark.plan(["atlas_body_box"], ["finetune_1", "finetune_all"], [0, 1], study=[])
    assert benchmark.run(planned) == []
    records = read_run_records(tmp_path / "results")
    assert [r.key for r in records] == sorted(run.key for run in planned) and len(records) == 4
    for record in records:
        draw = record.draw
        assert record.schema_version == SCHEMA_VERSION and not draw.reconstructed
        assert draw == Draw.from_datalist(benchmark.planner.data.datalist(record.key.seed), record.key.setting)
        assert (len(draw.labelled), len(draw.pool), len(draw.validation), len(draw.test)) == (
            1 if record.key.setting == "finetune_1" else 6, 3, 2, 4)
        assert draw.labelled == tuple(case["case"] for case in record.result.values["labelled_cases"])
        assert reconstruct_draw(record.settings.config) == replace(draw, reconstructed=True)
        assert record.budget.epochs == 0 and sorted(record.result.test.cases) == sorted(draw.test)
