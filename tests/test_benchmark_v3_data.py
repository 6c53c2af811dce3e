"""Benchmark v3's data and draws in the benchmark (docs/PROTOCOL_v3.md, section 13): a size with ``draws: {design: v3}``
gets every seed's datalist (tuning seeds included) from v3's design, each recording its whole draw; its arms' stages
are planned by semcl_benchmark/cascade_plan.py (an arm naming a stage not built is refused by name), and
``--data-only`` writes the data and resumes."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest

from semcl_benchmark.cli import main
from semcl_benchmark.datasets import BenchmarkData
from semcl_benchmark.draws_v3 import realistic_phases, seed_datalists
from semcl_benchmark.plan import Planner, Workspace
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.run_records import Draw, case_id

PROTOCOL = load_protocol()
V3 = PROTOCOL.sizes["v3"]
TINY = PROTOCOL.sizes["v3_tiny"]


def ids(entries) -> list[str]:
    return [case_id(entry["image"]) for entry in entries]


@pytest.fixture(scope="module")
def full_datalists() -> dict[int, dict]:
    """v3's datalists at full size, from the subjects' phases alone (no image is painted)."""
    phases = realistic_phases(V3.data["num"], V3.data["seed"])
    entries = [{"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz", "contrast_phase": phase}
               for case, phase in phases.items()]
    return seed_datalists(entries, V3.draws, V3.seeds, V3.tuning_seeds)


def test_the_v3_size_is_the_drafts_entry():
    assert V3.data == {"preset": "realistic", "num": 180, "size": [128, 128, 96], "seed": 0}
    assert V3.draws == {"design": "v3", "test": 32, "validation": 8, "pool": 12, "labelled": 2}
    assert (V3.seeds, V3.tuning_seeds, V3.stage1_pixdim) == (tuple(range(8)), (100, 101), 5.625)
    assert BenchmarkData(V3, Path("/nonexistent")).pixdim == [2.8125] * 3
    assert V3.splits is None and V3.drawn


def test_full_size_datalists_keep_seeds_apart(full_datalists):
    seeds = [*V3.seeds, *V3.tuning_seeds]
    assert sorted(full_datalists) == sorted(seeds)
    firsts = [ids(full_datalists[s]["finetune_1"])[0] for s in V3.seeds]
    assert len(set(firsts)) == len(V3.seeds)  # at 1 volume, 8 different cases
    labelled = [set(ids(full_datalists[s]["finetune_2"])) for s in seeds]
    assert all(a.isdisjoint(b) for a, b in combinations(labelled, 2))  # no case labelled by two seeds
    for seed in seeds:
        datalist = full_datalists[seed]
        assert ids(datalist["finetune_2"])[:1] == ids(datalist["finetune_1"])  # nested
        pool = set(ids(datalist["pretrain"]))
        assert len(pool) == 12 and pool.isdisjoint(labelled[seeds.index(seed)])
        assert ids(datalist["finetune_all"]) == ids(datalist["finetune_2"]) + ids(datalist["pretrain"])
        held_out = set(ids(datalist["test"])) | set(ids(datalist["validation"]))
        assert held_out.isdisjoint(ids(datalist["finetune_all"]))
    # 180 subjects: the smallest count at which no two seeds share a training case (docs/PROTOCOL_v3.md, section 3)
    training = [set(ids(full_datalists[s]["finetune_all"])) for s in seeds]
    assert all(a.isdisjoint(b) for a, b in combinations(training, 2))


def test_full_size_test_and_validation_are_fixed_and_hold_every_phase(full_datalists):
    test = {tuple(ids(d["test"])) for d in full_datalists.values()}
    validation = {tuple(ids(d["validation"])) for d in full_datalists.values()}
    assert len(test) == 1 and len(validation) == 1
    (test,), (validation,) = test, validation
    assert len(test) >= 32 and len(validation) == 8 and set(test).isdisjoint(validation)
    phases = realistic_phases(V3.data["num"], V3.data["seed"])
    assert set(Counter(phases[c] for c in test)) == set(phases.values())


def test_every_datalist_records_its_whole_draw_with_phases(full_datalists):
    phases = realistic_phases(V3.data["num"], V3.data["seed"])
    for datalist in full_datalists.values():
        draw = Draw.from_datalist(datalist, "finetune_1")
        assert draw.labelled == tuple(ids(datalist["finetune_1"])) and draw.pool == tuple(ids(datalist["pretrain"]))
        assert (draw.validation, draw.test) == (tuple(ids(datalist["validation"])), tuple(ids(datalist["test"])))
        cases = {*draw.labelled, *draw.pool, *draw.validation, *draw.test}
        assert dict(draw.phases) == {case: phases[case] for case in cases}
        assert datalist["draw"]["labelled"] == ids(datalist["finetune_2"])
        assert Draw.from_json(json.loads(json.dumps(draw.to_json()))) == draw


def test_a_v2_draw_is_written_as_before():
    entry = {"image": "./imagesTr/phantom_001.nii.gz", "contrast_phase": "native"}
    draw = Draw.from_datalist({"pretrain": [entry], "validation": [entry], "test": [entry]}, None)
    assert draw.phases == {} and set(draw.to_json()) == {"labelled", "pool", "validation", "test"}


def test_planning_an_arm_without_its_stage_is_refused_by_name(tmp_path):
    extra = tmp_path / "protocol.yaml"
    extra.write_text("arms:\n  cascade_later: {stage: stage3, random_init: true}\n", encoding="utf-8")
    protocol = load_protocol([extra])
    planner = Planner(protocol, TINY, Workspace(tmp_path))
    with pytest.raises(ValueError, match=r"arm 'cascade_later'.*'stage3' stage, which is not built yet"):
        planner.plan(["cascade_later"], ["finetune_1"], [0])
    # v3's own stages are built (tests/test_benchmark_v3_stages.py); scratch is planned as before in a v2 size
    assert Planner(protocol, TINY, Workspace(tmp_path)).plan(["scratch", "cascade_semcl"], ["finetune_1"], [0])
    assert Planner(protocol, PROTOCOL.sizes["quick"], Workspace(tmp_path)).plan(["scratch"], ["finetune_1"], [0])


def test_the_data_only_command_writes_and_resumes(tmp_path, capsys, unsized_protocol):
    work, results = tmp_path / "work", tmp_path / "results"
    argv = ["--size", "v3_tiny", "--data-only", "--workdir", str(work), "--results", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"1/{TINY.data['num']} phantom_000" in out  # progress, a line per subject
    seeds = [*TINY.seeds, *TINY.tuning_seeds]
    files = {seed: work / "datalists" / f"datalist_seed{seed}.json" for seed in seeds}
    written = {seed: json.loads(path.read_text(encoding="utf-8")) for seed, path in files.items()}
    data = BenchmarkData(TINY, work)
    assert written == seed_datalists(data.entries(), TINY.draws, TINY.seeds, TINY.tuning_seeds)
    for datalist in written.values():
        assert all((data.folder / entry["image"]).is_file() for entry in datalist["finetune_all"] + datalist["test"])
    stamps = {path: path.stat().st_mtime_ns for path in [*files.values(), data.folder / "dataset.json"]}
    files[seeds[0]].unlink()  # an interrupted preparation: one datalist missing
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "phantom_000" not in out  # the complete dataset is reused, not written again
    assert json.loads(files[seeds[0]].read_text(encoding="utf-8")) == written[seeds[0]]
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items() if path != files[seeds[0]])
    # a cascade size's runs are refused until its training settings are sized (docs/PROTOCOL_v3.md, section 11)
    assert main(["--size", "unsized", "--protocol", str(unsized_protocol), "--workdir", str(tmp_path / "u"),
                 "--results", str(tmp_path / "u_results")]) == 2
    assert "has no refine, pretrain settings yet" in capsys.readouterr().err
