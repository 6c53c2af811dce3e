"""The benchmark report (load -> analyse -> render): the analysis's numbers on small tables, and the committed reports.

The committed reports are checked three ways (marked ``slow``: the run records' reader makes the phantoms again to
reconstruct the draws, about 30 s): each regenerates exactly as its golden snapshot under ``tests/data/report/``; the
new v2 report holds every number of the v2 report as it was before issue 34 (``RESULTS_v2_before_issue34.md``, frozen);
and the six corrections of issue 34 item 3 are numbers computed from the result files. To refresh the snapshots after
an intended change of the report, run ``SEMCL_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_benchmark_report.py -m
slow`` and review the diff of ``tests/data/report/*.md`` (then regenerate ``docs/RESULTS.md`` with
``python scripts/benchmark.py --report-only``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from semcl_benchmark.report import endpoints, render
from semcl_benchmark.report.diagnosis import (caps, draws, noise, own_best, pretraining_budgets, probe_against_full,
                                              setting_ceilings)
from semcl_benchmark.report.endpoints import reach
from semcl_benchmark.report.load import mean_dice, table

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "report"
ORGANS = ["spleen", "liver"]
NUMBER = re.compile(r"[+-]?\d+\.\d+")


def run(arm, setting, seed, dice, probe=False, points=None, **fields) -> tuple[str, dict]:
    """A fine-tuning result file's content: 3 test cases of per-organ Dice ``dice``; validation ``points``
    ``[(step, Dice), ...]`` (2 steps per epoch)."""
    key = f"finetune__{arm}__{setting}__seed{seed}" + ("__probe" if probe else "")
    config = {"stage": "finetune", "arm": arm, "setting": setting, "seed": seed, "probe": probe,
              "finetune": {"max_epochs": 100, "val_interval": 10, "early_stop_patience": 2}}
    record = {"config": config, "test": {"classes": ORGANS, "cases": ["a", "b", "c"], "dice": [[dice, dice]] * 3},
              "epochs": 50, "best_metric_epoch": 30, "steps_per_epoch": 2,
              "validation_points": [{"epoch": s // 2, "step": s, "seconds": s / 10, "val_mean_dice": d}
                                    for s, d in points or []], **fields}
    return key, record


def runs(*entries):
    return table(dict(entries))


def test_a_gain_on_every_seed_is_tested_and_holm_adjusted_over_the_declared_family():
    scratch = [run("scratch", "finetune_1", s, 0.50 + 0.01 * s) for s in range(8)]
    method = [run("semcl_exact", "finetune_1", s, 0.58 + 0.01 * s + 0.001 * s * s) for s in range(8)]
    family = endpoints.family(runs(*scratch, *method), endpoints.primary_family(), 8)
    (outcome,) = family.outcomes
    differences = [0.08 + 0.001 * s * s for s in range(8)]
    assert outcome.seeds == 8 and outcome.difference.mean == pytest.approx(np.mean(differences))
    assert outcome.p == pytest.approx(2 / 2**8) and outcome.holm_p == pytest.approx(4 * 2 / 2**8)
    assert outcome.direction == "gain" and outcome.reaches_target and not outcome.interval_disagrees
    assert family.declared == 4 and family.missing == 3 and family.floor is None


def test_a_difference_of_mixed_sign_is_no_significant_difference():
    scratch = [run("scratch", "finetune_2", s, 0.5) for s in range(4)]
    method = [run("semcl_coarse", "finetune_2", s, 0.5 + d) for s, d in enumerate([0.02, -0.03, 0.01, -0.01])]
    (outcome,) = endpoints.run_family(runs(*scratch, *method), endpoints.primary_family())
    assert outcome.direction == "none" and not outcome.reaches_target
    assert outcome.difference.low < 0 < outcome.difference.high


@pytest.mark.parametrize("seeds, declared, planned, expected", [
    (8, 4, 8, None),  # 4 x 2/256 = 0.031 < 0.05
    (8, 8, 8, (0.0625, True)),  # 8 x 2/256: not even all planned seeds can reach it
    (3, 4, 8, (1.0, False)),  # more seeds would
])
def test_holm_floor_says_whether_a_family_can_reach_alpha(seeds, declared, planned, expected):
    floor = endpoints.holm_floor(seeds, declared, planned)
    assert (floor if floor is None else (floor.smallest, floor.by_design)) == expected


def test_a_seed_that_never_reaches_scratchs_best_ranks_slowest():
    scratch = [run("scratch", "finetune_1", s, 0.5, points=[(20, 0.3), (40, 0.6), (60, 0.5)]) for s in range(3)]
    method = [run("semcl_exact", "finetune_1", 0, 0.5, points=[(20, 0.61)]),  # reached at step 20
              run("semcl_exact", "finetune_1", 1, 0.5, points=[(20, 0.4), (60, 0.65)]),  # at step 60
              run("semcl_exact", "finetune_1", 2, 0.5, points=[(20, 0.2)])]  # never: ranked slowest
    found = reach(runs(*scratch, *method), "semcl_exact", "finetune_1")
    assert (found.paired, found.reached, found.steps, found.scratch_steps) == (3, 2, 40, 40)
    assert found.ratio == pytest.approx(np.median([20 / 40, 60 / 40])) and found.faster == 1


def test_runs_at_their_cap_and_still_improving_are_counted():
    table_ = runs(run("scratch", "finetune_1", 0, 0.5, epochs=100, best_metric_epoch=95),  # improving at the cap
                  run("scratch", "finetune_1", 1, 0.5, epochs=100, best_metric_epoch=70),  # capped, had plateaued
                  run("scratch", "finetune_1", 2, 0.5, epochs=60, best_metric_epoch=40, budget={"max_epochs": [50, 100]}))
    found = caps(table_)
    assert (found.total, found.capped, found.improving) == (3, 2, 1)
    assert found.improving_runs == [("scratch", "finetune_1", False, 0)]
    assert found.extended == [("scratch", "finetune_1", False, 2, [50, 100], 40, 60)]


def test_pretraining_steps_and_a_still_falling_loss():
    def pretrain(seed, losses):
        config = {"stage": "pretrain", "arm": "simclr", "seed": seed}
        history = [{"epoch": e + 1, "iteration": 2 * (e + 1), "mean_loss": v} for e, v in enumerate(losses)]
        return f"pretrain__simclr__seed{seed}", {"config": config, "summary": {}, "history": history}

    falling, flat = list(np.linspace(4, 3, 20)), [4.0] * 10 + [3.0 + 0.01 * i for i in range(10)]
    (found,) = pretraining_budgets(runs(pretrain(0, falling), pretrain(1, flat), pretrain(2, falling)))
    assert (found.arm, found.steps, found.falling, found.seeds) == ("simclr", 40, 2, 3)


def test_a_probe_above_its_full_fine_tuning_is_found_seed_by_seed():
    table_ = runs(*[run("supervised", "finetune_1", s, 0.65, probe=True) for s in range(2)],
                  *[run("supervised", "finetune_1", s, d) for s, d in enumerate([0.5, 0.3])],
                  run("supervised", "finetune_1", 5, 0.9))  # a seed without a probe is not compared
    (found,) = probe_against_full(table_, "finetune_1")
    assert found.probe == pytest.approx(0.65) and found.full == pytest.approx({0: 0.5, 1: 0.3})
    assert found.probe_above_every_full_run


def test_interval_ceilings_and_each_arm_at_its_own_best():
    scratch = [run("scratch", "finetune_1", s, 0.5) for s in range(4)]
    method = [run("semcl_exact", "finetune_1", s, 0.5 + d) for s, d in enumerate([0.1, -0.05, 0.08, -0.02])]
    table_ = runs(*scratch, *method)
    outcomes = endpoints.run_family(table_, endpoints.primary_family())
    (ceiling,) = setting_ceilings(outcomes)
    assert ceiling.highest == pytest.approx(outcomes[0].difference.high) and not ceiling.target_excluded
    whole = endpoints.run_family(table_, [endpoints.Test("semcl_exact", "scratch", "finetune_1")])
    late = [endpoints.Outcome(endpoints.Test("semcl_exact", "scratch", "finetune_1 @ 1"), o.difference, o.p,
                              o.holm_p, o.seeds) for o in whole]
    (best,) = own_best(outcomes, late)
    assert best.own_best == pytest.approx(np.mean([0.1, -0.05, 0.08, -0.02]))


def test_draw_overlap_counts_distinct_volumes_shared_draws_and_pools():
    table_ = runs(*[run("scratch", "finetune_1", s, 0.5, labelled_cases=[{"case": c, "contrast_phase": "arterial"}])
                    for s, c in enumerate(["p1", "p2", "p1"])])
    table_["labelled"] = [("p1",), ("p2",), ("p1",)]
    table_["pool"] = [("u1", "u2", "u3"), ("u2", "u3", "u4"), ("u1", "u2", "u3")]
    table_["reconstructed"] = False
    found = draws(table_)
    assert found.distinct == {"finetune_1": 2} and found.shared_sets == {"finetune_1": [(0, 2)]}
    assert found.most_common == {"finetune_1": ("p1", 2)} and found.phases_single == {"arterial": 3}
    assert (found.pool_size, found.pool_shared) == (3, (2, 3)) and found.overlapping and not found.pool_reconstructed


def test_noise_counts_seeds_ahead_and_the_smallest_p():
    table_ = runs(*[run("scratch", "finetune_1", s, 0.5) for s in range(4)],
                  *[run("semcl_exact", "finetune_1", s, 0.5 + d) for s, d in enumerate([0.1, -0.1, 0.2, 0.05])])
    found = noise(table_, ["semcl_exact"], ["finetune_1"])
    assert found.ahead == [("semcl_exact", "finetune_1", 3, 4)] and found.smallest_p == pytest.approx(2 / 16)
    assert found.sd_low == pytest.approx(np.std([0.1, -0.1, 0.2, 0.05], ddof=1))


# ------------------------------------------------------------------------------------------- committed reports


def _regenerate(tmp: Path, size_name: str, report_name: str):
    """Write the report of a committed size from a copy of its result files, laid out as committed."""
    from semcl_benchmark.protocol import load_protocol
    from semcl_benchmark.report import analyse, write_report
    from semcl_benchmark.report.load import load_runs
    from semcl_benchmark.runner import Benchmark

    size = load_protocol().sizes[size_name]
    results = tmp / "docs" / "results" / "benchmark" / size_name
    shutil.copytree(ROOT / "docs" / "results" / "benchmark" / size_name, results)
    benchmark = Benchmark(size, results, tmp / "work")
    planned = benchmark.plan(list(size.arms), list(size.settings), list(size.seeds), study=[])
    report = tmp / "docs" / report_name
    command = "python scripts/benchmark.py" + ("" if size_name == "default" else f" --size {size_name}")
    write_report(size, planned, benchmark.store, report, command, written="(snapshot)")
    analysed = analyse(size, planned, load_runs(planned, benchmark.store), results / "plots", command)
    return report.read_text(encoding="utf-8"), analysed


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    return _regenerate(tmp_path_factory.mktemp("default"), "default", "RESULTS.md")


def _snapshot(text: str, name: str) -> None:
    path = DATA / name
    if os.environ.get("SEMCL_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed: review, then refresh it (module docstring)"


@pytest.mark.slow
def test_the_default_report_regenerates_as_its_snapshot(default_report):
    _snapshot(default_report[0], "default.md")
    committed = ROOT.joinpath("docs", "RESULTS.md").read_text(encoding="utf-8")
    assert re.sub(r"Report written .*", "", committed) == re.sub(r"Report written .*", "", default_report[0])


@pytest.mark.slow
def test_the_difficulty_report_regenerates_as_its_snapshot(tmp_path):
    _snapshot(_regenerate(tmp_path, "difficulty", "RESULTS.md")[0], "difficulty.md")


@pytest.mark.slow
def test_the_new_v2_report_holds_every_number_of_the_old_one(default_report):
    """Issue 34: the same numbers as the v2 report before the rewrite (text aside), and more for the corrections."""
    strip = re.compile(r"Report written .*")
    old = Counter(NUMBER.findall(strip.sub("", (DATA / "RESULTS_v2_before_issue34.md").read_text(encoding="utf-8"))))
    new = Counter(NUMBER.findall(strip.sub("", default_report[0])))
    assert not old - new, f"numbers of the old report missing from the new one: {sorted((old - new).items())[:20]}"
    assert sum((new - old).values()) > 0


def _committed(name: str) -> dict:
    return json.loads((ROOT / "docs" / "results" / "benchmark" / "default" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_six_corrections_are_numbers_of_the_result_files(default_report):
    """Issue 34 item 3: each correction of the v2 report is a number the result files give."""
    v = default_report[1].values
    # 1. supervised pretraining: its frozen probe above its full fine-tuning on seeds 0-2; SimCLR's optimiser steps
    (supervised,) = [x for x in v["probe_against_full"] if x.arm == "supervised"]
    full = {s: mean_dice(_committed(f"finetune__supervised__finetune_1__seed{s}")) for s in range(3)}
    assert supervised.full == pytest.approx(full) and [round(d, 3) for d in full.values()] == [0.516, 0.290, 0.403]
    assert round(supervised.probe, 3) == 0.651 and supervised.probe_above_every_full_run
    steps = {b.arm: b for b in v["pretraining_budgets"]}
    assert steps["simclr"].steps == _committed("pretrain__simclr__seed0")["history"][-1]["iteration"] == 120
    assert steps["semcl_exact"].steps == 360 and (steps["simclr"].falling, steps["simclr"].seeds) == (7, 8)
    # 2. the intervals at 1 labelled volume reach +0.057; at 2 and 4 at most +0.026
    ceilings = {c.setting: c for c in v["ceilings"]}
    assert round(ceilings["finetune_1"].highest, 3) == 0.057 and not ceilings["finetune_1"].target_excluded
    assert max(ceilings[s].highest for s in ("finetune_2", "finetune_4")) <= 0.0265
    assert all(ceilings[s].target_excluded for s in ("finetune_2", "finetune_4"))
    # 3. each arm at its own best against at scratch's best epoch
    exact = {x.setting: (round(x.own_best, 3), round(x.at_scratch_best, 3)) for x in v["own_best"]
             if x.arm == "semcl_exact"}
    assert exact == {"finetune_1": (-0.001, -0.035), "finetune_2": (-0.020, -0.038), "finetune_4": (-0.027, -0.031)}
    # 4. the headroom is paired over seeds 0-2 only
    assert {tuple(g.seeds) for g in v["headroom"]} == {(0, 1, 2)}
    # 5. the draws overlap
    d = v["draws"]
    assert d.distinct["finetune_1"] == 6 and "native" not in d.phases_single and sum(d.phases_single.values()) == 8
    assert (0, 7) in d.shared_sets["finetune_2"] and d.most_common["finetune_4"] == ("phantom_000", 7)
    assert (d.pool_size, d.pool_shared, d.pool_reconstructed) == (12, (6, 11), True)
    # 6. the arms that also use the pool's masks
    assert v["pool_mask_arms"] == ["semcl_coarse", "semcl_exact", "supervised"]
    # the README's results section quotes these counts (its decimals are checked by tests/test_readmes.py)
    readme = " ".join(ROOT.joinpath("README.md").read_text(encoding="utf-8").split("<!-- benchmark-v2 -->")[1].split())
    quoted = {
        r"(\d+) optimiser steps against the method's (\d+)": (120, 360),
        r"still falling over its last 10 epochs in (\d+) of (\d+) seeds": (7, 8),
        r"(\d+) distinct volumes serve the (\d+) seeds at 1 labelled volume": (d.distinct["finetune_1"], d.seeds),
        r"seeds (\d+) and (\d+) draw the same 2 volumes": d.shared_sets["finetune_2"][0],
        r"one volume is in (\d+) of the (\d+) four-volume sets": (d.most_common["finetune_4"][1], d.seeds),
        r"share (\d+) to (\d+) of their (\d+) cases": (*d.pool_shared, d.pool_size),
        r"masks of the (\d+) volumes of their pretraining pool": (d.pool_size,),
    }
    for pattern, numbers in quoted.items():
        match = re.search(pattern, readme)
        assert match and tuple(map(int, match.groups())) == tuple(numbers), pattern


def test_the_template_formats_values_only():
    """Every conditional wording is a field of the analysis: the templates hold no comparison with a number."""
    for template in (ROOT / "semcl_benchmark" / "report" / "templates").glob("*.j2"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"{%[^%]*[<>]=?\s*-?\d", text), f"{template.name} compares a value with a number"
    assert render is not None


def test_no_function_of_the_report_package_is_over_60_lines():
    """Issue 34: the report's analysis stays in small functions (their bodies, docstrings and decorators included)."""
    import ast

    long = []
    for module in sorted((ROOT / "semcl_benchmark" / "report").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - start + 1 > 60:
                    long.append(f"{module.name}:{node.name} ({node.end_lineno - start + 1} lines)")
    assert not long, f"functions over 60 lines: {long}"


def test_a_size_with_no_finished_run_gets_a_report_of_what_is_planned(tmp_path):
    from semcl_benchmark.protocol import load_protocol
    from semcl_benchmark.report import write_report
    from semcl_benchmark.runner import Benchmark

    size = load_protocol().sizes["quick"]
    benchmark = Benchmark(size, tmp_path / "results", tmp_path / "work")
    planned = benchmark.plan(list(size.arms), list(size.settings), list(size.seeds), study=list(size.study_arms))
    write_report(size, planned, benchmark.store, tmp_path / "RESULTS.md", "command", written="now")
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert f"Runs finished: 0 of {len(planned)} planned" in text
    rows = [line for line in text.splitlines() if re.match(r"\| (pretrain|finetune|atlas|embedding) \|", line)]
    seeds = [part.strip().split("-") for row in rows for part in row.split("|")[4].split(",")]
    assert sum(int(r[-1]) - int(r[0]) + 1 for r in seeds) == len(planned)  # every planned run listed as unfinished
