"""Benchmark v3's report (``semcl_benchmark/report/v3.py``, ``templates/results_v3.md.j2``) on synthetic schema-4
run records: the families' numbers (Wilcoxon, Holm, crossed bootstrap), the smallest Holm p of each family against
``docs/PROTOCOL_v3.md`` section 8, the tables, the prior-file check, the rendered report as a golden snapshot
(``tests/data/report/results_v3_synthetic.md``; refresh an intended change with ``SEMCL_UPDATE_SNAPSHOTS=1 python -m
pytest tests/test_benchmark_report_v3.py`` and review its diff), and the report of a size with no run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.report import analyse_v3, render
from semcl_benchmark.report.load import table
from semcl_benchmark.report.v3 import ORACLE, RecipeCheck
from semcl_benchmark.run_records import RunKey, parse_run_record
from semcl_benchmark.runs import Run
from semcl_benchmark.statistics import holm

SNAPSHOT = Path(__file__).parent / "data" / "report" / "results_v3_synthetic.md"
ORGANS = ["spleen", "right kidney", "left kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas"]
CASES = ["phantom_150", "phantom_151", "phantom_152", "phantom_153"]
PHASES = {"phantom_150": "arterial", "phantom_151": "arterial", "phantom_152": "portal_venous",
          "phantom_153": "delayed"}
SEEDS = range(8)
SHA = {case: f"{i:064x}" for i, case in enumerate(CASES)}


def _mean(arm: str, seed: int) -> float:
    """Each arm's mean Dice per seed: distinct paired differences (exact Wilcoxon p 2 / 2**8 where all one sign)."""
    base = {"scratch": 0.50, "cascade_scratch": 0.60, "cascade_semcl": 0.65}.get(arm.removesuffix(ORACLE), 0.60)
    if arm == "cascade_semcl_frozen":  # mixed sign against cascade_scratch
        return 0.60 + 0.01 * seed + 0.001 * seed * seed + (-1) ** seed * 0.002 * (seed + 1)
    return (base + 0.01 * seed + 0.001 * seed * seed * (arm != "scratch") + 0.002 * seed * (arm == "cascade_semcl")
            + (0.1 if arm.endswith(ORACLE) else 0))


def _dice(arm: str, seed: int) -> list[list[float]]:
    """``(cases, organs)``: case ``c`` at ``mean + 0.02 (c - 1.5)``; the gallbladder 0.3 below the other organs."""
    mean = _mean(arm, seed)
    rows = []
    for c in range(len(CASES)):
        level = mean + 0.02 * (c - 1.5) + 0.3 / len(ORGANS)
        rows.append([round(level - (0.3 if organ == "gallbladder" else 0.0), 6) for organ in ORGANS])
    return rows


def record(stage: str, arm: str, setting: str | None, seed: int, tuning: str | None = None, **fields) -> dict:
    """A schema-4 result file's content of a v3 run (the fields :mod:`semcl_benchmark.cascade_stages` writes)."""
    key = RunKey(stage, arm, setting, seed, tuning_recipe=tuning)
    config = {"stage": stage, "arm": arm, "setting": setting, "seed": seed, "probe": False,
              "finetune": {"max_epochs": 100}, **({"tuning_recipe": tuning} if tuning else {})}
    content = {"schema_version": 4, "key": key.name, "config": config, "config_hash": "0" * 12,
               "draw": {"labelled": [f"phantom_{seed:03d}"], "pool": ["phantom_120"], "validation": ["phantom_140"],
                        "test": CASES, "phases": PHASES},
               "pipeline_stage": 1 if arm == "scratch" else 2, "grids": None, "recipe": None, "priors": {},
               "pretraining": None, "stage": stage, "machine": {"cpu": "Synthetic CPU"}, "code": "abc1234",
               "allow_dirty": False, "finished": "2026-12-07T00:00:00", "total_seconds": 10.0 + seed}
    if stage in ("finetune", "oracle"):
        content["test"] = {"cases": [f"{c}.nii.gz" for c in CASES], "classes": ORGANS, "dice": _dice(arm, seed)}
    return {**content, **fields}


def _stage2(arm: str, setting: str, seed: int, test_sha: dict | None = None) -> dict:
    """A stage-2 run whose validation priors are its predict run's files, and its test priors too unless
    ``test_sha``."""
    stage1 = f"finetune__scratch__{setting}__seed{seed}"
    prior = {"source": "stage1", "stage1_run": stage1, "sha256": SHA}
    points = [{"epoch": e, "step": 10 * e, "seconds": e, "val_mean_dice": _mean(arm, seed) * e / 4} for e in (1, 2, 3, 4)]
    encoder = {"file": "encoder.pt", "sha256": "ab" * 32, "loaded_fraction": 1.0} if arm != "cascade_scratch" else None
    priors = {"validation": prior, "test": {**prior, "sha256": test_sha or SHA}}
    return record("finetune", arm, setting, seed, priors=priors, recipe={"name": "R1", "encoder_lr_multiplier": 1.0},
                  validation_points=points, encoder=encoder, best_metric=_mean(arm, seed))


def synthetic_records() -> list[dict]:
    """8 seeds x 2 settings of the primary arms, stage 1, its predict runs and the oracle tests; one pretraining, two
    tuning runs; ``cascade_supervised`` and ``cascade_semcl_gt`` without runs; one stage-2 run whose test priors
    are not its predict run's files (seed 3 of ``cascade_semcl`` at ``finetune_2``)."""
    files = []
    for setting in ("finetune_1", "finetune_2"):
        for seed in SEEDS:
            files.append(record("finetune", "scratch", setting, seed))
            files.append(record("predict", "scratch", setting, seed, predictions={
                split: {c: {"file": f"{c}.nii.gz", "sha256": SHA[c]} for c in CASES} for split in ("validation", "test")}))
            for arm in ("cascade_scratch", "cascade_semcl", "cascade_semcl_frozen"):
                tampered = {**SHA, CASES[0]: "f" * 64} if (arm, setting, seed) == ("cascade_semcl", "finetune_2", 3) else None
                files.append(_stage2(arm, setting, seed, tampered))
            for arm in ("cascade_scratch", "cascade_semcl"):
                oracle = record("oracle", arm, setting, seed, priors={"test": {"source": "oracle"}})
                files.append({**oracle, "test": {**oracle["test"], "dice": _dice(arm + ORACLE, seed)}})
    files.append(record("pretrain", "cascade_semcl", "finetune_1", 0,
                        pretraining={"steps": 12, "loss_fall": 0.08, "still_falling": True}))
    files += [record("finetune", "cascade_semcl", "finetune_1", 100, tuning=r, best_metric=dice)
              for r, dice in (("R1", 0.6), ("R2", 0.7))]
    return files


@pytest.fixture(scope="module")
def size():
    return load_protocol().sizes["v3"]


@pytest.fixture(scope="module")
def floor(tmp_path_factory):
    """A resolution floor's file (``semcl_benchmark.resolution_floor``) of size v3."""
    path = tmp_path_factory.mktemp("floor") / "resolution_floor.json"
    organs = {organ: 0.6 if organ == "gallbladder" else 0.9 for organ in ORGANS}
    path.write_text(json.dumps({"size": "v3", "mean_dice": 0.8625, "organ_dice": organs}), encoding="utf-8")
    return path


CHECK_SEEDS = range(4)


def check_records() -> list[dict]:
    """The v2 recipe check's runs: v2's ``scratch`` on seeds 0-3, ``supervised`` ahead of it on 3 of them at 1
    volume and on all 4 at 2, ``semcl_exact`` only at 1 volume; two tuning runs of ``supervised`` (seed 100)."""
    files = [record("finetune", "scratch", s, seed) for s in ("finetune_1", "finetune_2") for seed in CHECK_SEEDS]
    files += [record("finetune", "supervised", "finetune_1", seed, test={
        "cases": [f"{c}.nii.gz" for c in CASES], "classes": ORGANS, "dice": _dice("scratch", seed - 1)})
        for seed in CHECK_SEEDS]
    files += [record("finetune", "supervised", "finetune_2", seed, test={
        "cases": [f"{c}.nii.gz" for c in CASES], "classes": ORGANS, "dice": _dice("cascade_scratch", seed)})
        for seed in CHECK_SEEDS]
    files += [record("finetune", "semcl_exact", "finetune_1", seed) for seed in CHECK_SEEDS]
    files += [record("finetune", "supervised", "finetune_1", 100, tuning=r, best_metric=dice)
              for r, dice in (("R1", 0.5), ("R4", 0.55))]
    return files


@pytest.fixture(scope="module")
def check():
    protocol = load_protocol()
    runs = table([parse_run_record(c, f"{c['key']}.json") for c in check_records()])
    return RecipeCheck(protocol.sizes["v3_recipe_check"], "scratch", runs)


@pytest.fixture(scope="module")
def analysed(size, floor, check):
    contents = synthetic_records()
    runs = table([parse_run_record(c, f"{c['key']}.json") for c in contents])
    planned = [Run(c["key"], c["config"]) for c in contents]
    # as v3 plans them: cascade_supervised on the 8 seeds, cascade_semcl_gt on seeds 0-3 (its arm_seeds)
    for arm, seeds in (("cascade_supervised", SEEDS), ("cascade_semcl_gt", range(4))):
        planned += [Run(f"finetune__{arm}__{s}__seed{seed}", {**contents[0]["config"], "arm": arm, "setting": s,
                                                              "seed": seed})
                    for s in ("finetune_1", "finetune_2") for seed in seeds]
    return analyse_v3(size, planned, runs, "python scripts/benchmark.py --size v3", written="(snapshot)", floor=floor,
                      check=check)


def _outcome(fam, **where):
    (found,) = [o for o in fam.outcomes if all(getattr(o.test, k) == v for k, v in where.items())]
    return found


def test_the_primary_family_is_wilcoxon_by_seed_holm_over_4_and_crossed_intervals(analysed):
    primary = analysed.families["primary"].family
    assert primary.declared == 4 and len(primary.outcomes) == 4
    gain = _outcome(primary, method="cascade_semcl", setting="finetune_1")
    mixed = _outcome(primary, method="cascade_semcl_frozen", setting="finetune_1")
    differences = [_mean("cascade_semcl", s) - _mean("cascade_scratch", s) for s in SEEDS]
    assert gain.difference.mean == pytest.approx(np.mean(differences))
    assert gain.p == pytest.approx(2 / 2**8)
    frozen = [_mean("cascade_semcl_frozen", s) - _mean("cascade_scratch", s) for s in SEEDS]
    assert mixed.p == pytest.approx(wilcoxon(frozen).pvalue)
    raw = [o.p for o in primary.outcomes]
    assert [o.holm_p for o in primary.outcomes] == pytest.approx(holm(raw))
    assert gain.direction == "gain" and mixed.direction == "none"
    for o in primary.outcomes:
        assert o.difference.low <= o.difference.mean <= o.difference.high


def test_each_family_says_its_smallest_holm_p_as_protocol_v3_section_8(analysed):
    """The table of section 8 (m tests, n seeds, smallest Holm p m x 2 / 2**n, whether below 0.05)."""
    expected = {"refinement by itself": (2, 0.016, True), "self-training": (2, 0.016, True),
                "small organs": (8, 0.0625, False), "every organ": (32, 0.25, False), "per phase": (16, 0.125, False),
                "time to accuracy": (6, 0.047, True), "oracle-prior gap": (4, 0.031, True),
                "ground-truth pool masks": (4, 0.5, False), "v2 recipe check": (4, 0.5, False)}
    rows = analysed.families["secondary"]
    assert list(rows) == list(expected)
    # the planned seeds of each family: cascade_semcl_gt runs on seeds 0-3 only (v3's arm_seeds)
    assert {title: row.seeds for title, row in rows.items()} == {**dict.fromkeys(expected, 8),
                                                                 "ground-truth pool masks": 4, "v2 recipe check": 4}
    for title, (tests, smallest, reachable) in expected.items():
        row = rows[title]
        assert (row.family.declared, row.smallest, row.reachable) == (tests, pytest.approx(smallest, rel=0.03),
                                                                      reachable), title  # section 8 rounds
    primary = analysed.families["primary"]
    assert primary.smallest == pytest.approx(0.031, rel=0.03) and primary.reachable


def test_the_v2_recipe_check_pairs_its_arms_with_v2s_scratch_by_seed(analysed):
    """Its own seeds (0-3), its own baseline's runs, the tuning seed apart; ``semcl_exact`` at 2 volumes has no runs."""
    row = analysed.families["secondary"]["v2 recipe check"]
    assert (row.seeds, row.family.declared, len(row.family.outcomes)) == (4, 4, 3)
    ahead = _outcome(row.family, method="supervised", setting="finetune_2")
    differences = [_mean("cascade_scratch", s) - _mean("scratch", s) for s in CHECK_SEEDS]
    assert (ahead.test.baseline, ahead.seeds) == ("scratch", 4)
    assert ahead.difference.mean == pytest.approx(np.mean(differences)) and ahead.p == pytest.approx(2 / 2**4)
    behind = _outcome(row.family, method="supervised", setting="finetune_1")
    assert behind.difference.mean == pytest.approx(np.mean([_mean("scratch", s - 1) - _mean("scratch", s)
                                                            for s in CHECK_SEEDS]))
    (supervised, semcl) = analysed.values["check_recipes"]
    assert (supervised.arm, supervised.source, supervised.runs["R4"], supervised.expected) == (
        "supervised", "tuning runs", 1, 4)
    assert supervised.validation_dice["R4"] == pytest.approx(0.55) and semcl.source == "none"


def test_organ_phase_and_oracle_comparisons(analysed):
    rows = analysed.families["secondary"]
    small = _outcome(rows["small organs"].family, method="cascade_semcl", organ="gallbladder", setting="finetune_2")
    assert small.difference.mean == pytest.approx(np.mean([_mean("cascade_semcl", s) - _mean("cascade_scratch", s)
                                                           for s in SEEDS]))
    assert len(rows["every organ"].family.outcomes) == 32 and rows["ground-truth pool masks"].family.outcomes == []
    gap = _outcome(rows["oracle-prior gap"].family, method="cascade_scratch" + ORACLE, setting="finetune_1")
    assert gap.difference.mean == pytest.approx(0.1) and gap.p == pytest.approx(2 / 2**8)
    phases = {o.test.phase for o in rows["per phase"].family.outcomes}
    assert phases == {"arterial", "portal_venous", "delayed"}
    reach = rows["time to accuracy"].family.outcomes
    arms = ("cascade_semcl", "cascade_semcl_frozen")  # cascade_supervised has no runs
    assert {(x.arm, x.setting) for x in reach} == {(a, s) for a in arms for s in ("finetune_1", "finetune_2")}


def test_tables_per_organ_small_organs_first_and_per_phase_from_the_draw(analysed):
    v = analysed.values
    setting, organs, means = v["organs"][0]
    assert organs[:2] == ["gallbladder", "pancreas"] and set(organs) == set(ORGANS)
    assert means["scratch"][0] == pytest.approx(means["scratch"][1] - 0.3)
    table_1 = v["phases"][0]
    assert table_1.phases == ["arterial", "portal_venous", "delayed"] and table_1.cases == [2, 1, 1]
    arterial = np.mean([np.mean(_dice("scratch", s)[:2]) for s in SEEDS])
    assert table_1.cells["scratch"][0].estimate.mean == pytest.approx(arterial)
    assert set(v["headline"]) >= {"cascade_scratch" + ORACLE, "cascade_semcl" + ORACLE}


def test_recipes_provenance_cost_and_missing_runs(analysed, size):
    v = analysed.values
    semcl = v["recipes"][0]
    assert (semcl.arm, semcl.chosen, semcl.source) == ("cascade_semcl", None, "tuning runs")
    assert semcl.validation_dice["R2"] == pytest.approx(0.7) and semcl.runs["R1"] == 1 and semcl.expected == 4
    chosen = dataclasses.replace(size, recipes={"cascade_semcl": {"chosen": "R2", "validation_dice": {"R2": 0.71}}})
    from semcl_benchmark.report.v3 import recipe_rows
    assert recipe_rows(chosen, table([]))[0][:2] == ("cascade_semcl", "R2")
    # cascade_semcl_gt takes cascade_semcl's choice, with no tuning runs of its own
    gt = recipe_rows(chosen, table([]))[-1]
    assert (gt.arm, gt.chosen, gt.runs, gt.expected) == ("cascade_semcl_gt", "R2", {}, 0)
    assert "`cascade_semcl`'s choice" in gt.source and set(gt.validation_dice.values()) == {None}
    assert [row.arm for row in v["recipes"]] == ["cascade_semcl", "cascade_supervised", "cascade_semcl_gt"]
    (mismatch,) = v["provenance"]["prior_mismatches"]
    assert mismatch[:4] == ("finetune__cascade_semcl__finetune_2__seed3", "test",
                            "predict__scratch__finetune_2__seed3", 1)
    assert v["provenance"]["cpus"] == ["Synthetic CPU"] and len(v["provenance"]["encoders"]) == 32
    cost = {(stage, arm): (n, mean) for stage, arm, n, mean, _ in v["cost"]}
    assert cost[("finetune", "cascade_semcl")][0] == 18 and cost[("predict", "scratch")] == (16, pytest.approx(13.5))
    assert v["unfinished"] == [("finetune", "cascade_supervised", "finetune_1", "0-7"),
                               ("finetune", "cascade_supervised", "finetune_2", "0-7"),
                               ("finetune", "cascade_semcl_gt", "finetune_1", "0-3"),
                               ("finetune", "cascade_semcl_gt", "finetune_2", "0-3")]
    assert v["tuning"] == 2


def test_the_resolution_floor_is_a_reference_row_of_its_own_size_only(analysed, size, floor):
    assert analysed.values["floor"]["mean_dice"] == 0.8625 and analysed.values["floor"]["file"] == floor.name
    text = render(analysed, "", "results_v3.md.j2")
    assert "| resolution floor | 0.600 | 0.900 |" in text and "scores a mean Dice of 0.863" in text
    tiny = load_protocol().sizes["v3_tiny"]
    assert analyse_v3(tiny, [], table([]), "command", floor=floor).values["floor"] is None


def test_the_synthetic_report_renders_as_its_snapshot(analysed):
    text = render(analysed, "", "results_v3.md.j2")
    for heading in ("## Primary endpoint", "## Secondary families", "### oracle-prior gap", "## Per-organ",
                    "## Mean test Dice per phase bucket", "## Fine-tuning recipes", "## Provenance", "## Cost"):
        assert heading in text
    assert "| finetune_1 | `cascade_semcl` - `cascade_scratch` |" in text
    if os.environ.get("SEMCL_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8"), "the v3 report changed: review, then refresh (docstring)"


def test_a_v3_size_without_runs_reports_what_is_planned_or_why_nothing_is(size):
    config = {"stage": "finetune", "arm": "scratch", "setting": "finetune_1"}
    planned = [Run(f"finetune__scratch__finetune_1__seed{s}", {**config, "seed": s}) for s in SEEDS]
    text = render(analyse_v3(size, planned, table([]), "command", written="now"), "", "results_v3.md.j2")
    assert "**No runs yet**: 0 of 8 planned runs finished." in text and "| finetune | `scratch` | finetune_1 | 0-7 |" in text
    assert "| every organ | 32 | 8 | 0.2500 | **no** | 0 |" in text
    assert "| ground-truth pool masks | 4 | 4 | 0.5000 | **no** | 0 |" in text  # from the size: its arm_seeds
    reason = "size 'v3' has no refine settings yet."
    text = render(analyse_v3(size, [], table([]), "command", written="now", unplanned=reason), "", "results_v3.md.j2")
    assert f"**No runs planned yet**: {reason}" in text and "None planned yet" in text


def test_the_cli_writes_the_v3_report_with_report_only(tmp_path):
    from semcl_benchmark.cli import main

    report = tmp_path / "RESULTS_v3.md"
    assert main(["--size", "v3", "--report-only", "--results", str(tmp_path / "results"), "--workdir",
                 str(tmp_path / "work"), "--report", str(report)]) == 0
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark v3 results: v3 size") and "## Secondary families" in text
