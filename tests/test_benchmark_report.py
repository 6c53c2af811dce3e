"""The benchmark report: v1's diagnosis and unchanged report, and v2's sections, each wording following the numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from semcl_benchmark.plan import Run
from semcl_benchmark.report import diagnosis

ORGANS = ["spleen", "gallbladder"]
CASES = 3
SIZE = SimpleNamespace(study_setting="finetune_1", study_arms=("semcl_variant",))


SCRATCH_CURVE = [[40, 0.1], [80, 0.3], [120, 0.5]]  # reaches half its best (0.25) at epoch 80


def finetune_run(
    arm: str,
    setting: str,
    seed: int,
    spleen: float,
    gallbladder: float = 0.2,
    source: str | None = None,
    curve: list | None = None,
):
    """A fine-tuning result as the benchmark writes it: per-case per-organ Dice, the voxel confusion matrix and the
    validation curve (``[epoch, validation Dice]``; 2 optimiser steps per epoch)."""
    pretrain = {"arm": source or arm} if arm != "scratch" else None
    return {
        "config": {"stage": "finetune", "arm": arm, "setting": setting, "probe": False, "seed": seed, "pretrain": pretrain},
        "test": {"classes": ORGANS, "cases": [f"case{i}" for i in range(CASES)], "dice": [[spleen, gallbladder]] * CASES},
        # rows: true background, spleen, gallbladder; 30 gallbladder voxels over 3 cases = 10 per case
        "confusion_matrix": {"classes": ["background", *ORGANS], "counts": [[900, 0, 0], [0, 300, 0], [10, 0, 20]]},
        "validation_curve": curve or SCRATCH_CURVE,
        "steps_per_epoch": 2,
    }


def arm_runs(arm: str, setting: str, spleens: list[float], **kwargs) -> dict:
    return {(arm, setting, False): {seed: finetune_run(arm, setting, seed, s, **kwargs) for seed, s in enumerate(spleens)}}


def text(lines: list[str]) -> str:
    return "\n".join(lines)


def test_little_headroom_noise_and_a_ceiling_are_measured():
    finetunes = {
        **arm_runs("scratch", "finetune_1", [0.80, 0.70, 0.75, 0.72]),
        **arm_runs("scratch", "finetune_2", [0.81, 0.71, 0.76, 0.73]),  # a second volume: +0.005 mean Dice
        # ahead on 1 seed of 4 at the end, on every seed early in fine-tuning
        **arm_runs("semcl_exact", "finetune_1", [0.81, 0.69, 0.75, 0.70], curve=[[40, 0.2], [80, 0.4], [120, 0.5]]),
        **arm_runs("semcl_exact", "finetune_2", [0.82, 0.72, 0.77, 0.74]),
        **arm_runs("semcl_variant", "finetune_1", [0.79, 0.68, 0.74, 0.71], source="semcl_exact"),
    }
    embeddings = {
        "semcl_exact": {seed: {"silhouette_test": 0.6 + 0.02 * seed} for seed in range(4)},
        "scratch": {seed: {"silhouette_test": 0.2} for seed in range(4)},
    }
    report = text(diagnosis(finetunes, embeddings, ["scratch", "semcl_exact"], ["finetune_1", "finetune_2"], SIZE))
    assert report.startswith("## Why the method misses the target")
    assert "is worth +0.005 [" in report and "10.0 times that" in report and "little for any initialisation" in report
    assert "`semcl_exact`, finetune_1: 1 of 4; `semcl_exact`, finetune_2: 4 of 4" in report
    assert "With 4 seeds the smallest two-sided Wilcoxon p is 0.1250" in report
    assert "finetune_1 (step 160): `semcl_exact` +0.100 (4 of 4, p = 0.1250)" in report
    assert "finetune_2 (step 160): `semcl_exact` +0.000 (0 of 4, p = 1.0000)" in report
    assert "pretraining speeds the start of fine-tuning more than it raises where fine-tuning ends" in report
    assert "No shortcut found.** 0 of the 1 shortcut-study variants are ahead" in report
    assert "`semcl_variant`, -0.006 over 4 seeds" in report
    # the gallbladder stays at 0.2 in every arm and setting; the spleen does not
    assert "gallbladder (10 voxels per test case, Dice 0.20-0.20)" in report and "spleen (" not in report
    # 8 pretrained runs on the study setting; silhouette 0.63 vs 0.20 of random weights
    assert "silhouette of 0.63 in the method's encoders against 0.20" in report and "Across the 8 fine-tuning" in report


def test_headroom_and_the_target_met_change_the_wording():
    gains = [0.10, 0.11, 0.09, 0.12, 0.10, 0.13, 0.08, 0.11]
    base = [0.5 + 0.01 * seed for seed in range(8)]
    finetunes = {
        **arm_runs("scratch", "finetune_1", base, gallbladder=0.9),
        **arm_runs("scratch", "finetune_2", [b + 0.2 for b in base], gallbladder=0.9),
        **arm_runs("semcl_exact", "finetune_1", [b + g for b, g in zip(base, gains)], gallbladder=0.9),
    }
    report = text(diagnosis(finetunes, {}, ["scratch", "semcl_exact"], ["finetune_1", "finetune_2"], SIZE))
    assert report.startswith("## What bounds the gain")  # +0.055 on every one of 8 seeds: p = 0.0078
    assert "more labels do help here" in report
    assert "`semcl_exact` +0.000 (0 of 8" in report and "speeds the start" not in report  # same curves: no lead
    assert "Below 0.5" not in report and "shortcut" not in report  # no low organ, no study run


@pytest.mark.parametrize("arms", [["scratch"], ["semcl_exact"]])
def test_no_diagnosis_without_both_sides(arms):
    finetunes = arm_runs(arms[0], "finetune_1", [0.5, 0.6])
    assert diagnosis(finetunes, {}, arms, ["finetune_1"], SIZE) == []


# ------------------------------------------------------------------------------------------------ benchmark v2

PHASES = ["arterial", "arterial", "native", "venous"]
V2 = SimpleNamespace(name="v2test", splits={"test": 4}, deviations=(), difficulty_criteria=False,
                     probe_setting="finetune_2", seeds=tuple(range(8)), probe_seeds=tuple(range(8)), study_arms=(),
                     study_setting=None,
                     arms=("scratch", "simclr", "semcl_exact", "semcl_coarse"), notes="fabricated")


def v2_run(arm, setting, seed, cases, probe=False, curve=None, epochs=200, best_epoch=100, max_epochs=400, **extra):
    """A v2 fine-tuning result as ``semcl_benchmark.stages`` writes it: one Dice per test case (both organs alike), the
    cases' phases, its validations (``[epoch, dice, seconds]`` given; 2 steps per epoch) and its budget (patience 2 x
    interval 50 = 100 epochs)."""
    dice = [[d, d] for d in cases]
    points = curve or [[50, 0.3, 10.0], [100, 0.5, 20.0], [150, 0.45, 30.0], [200, 0.44, 40.0]]
    return {
        "key": f"finetune__{arm}__{setting}__seed{seed}" + ("__probe" if probe else ""),
        "config": {"stage": "finetune", "arm": arm, "setting": setting, "probe": probe, "seed": seed,
                   "pretrain": None if arm == "scratch" else {"arm": arm},
                   "finetune": {"max_epochs": max_epochs, "val_interval": 50, "early_stop_patience": 2}},
        "test": {"classes": ORGANS, "cases": [f"case{i}" for i in range(len(cases))], "dice": dice,
                 "contrast_phases": PHASES[: len(cases)]},
        "validation_curve": [[e, d] for e, d, _ in points],
        "validation_points": [{"epoch": e, "step": 2 * e, "seconds": s, "val_mean_dice": d} for e, d, s in points],
        "steps_per_epoch": 2,
        "epochs": epochs,
        "best_metric_epoch": best_epoch,
        "code": "abc1234",
        **extra,
    }


def v2_arm(arm, setting, per_seed, probe=False, **kwargs) -> dict:
    """``{(arm, setting, probe): {seed: run}}`` from one list of case Dice per seed."""
    return {(arm, setting, probe): {s: v2_run(arm, setting, s, cases, probe, **kwargs) for s, cases in
                                    enumerate(per_seed)}}


def base_cases(seed: int) -> list[float]:
    return [0.60 + 0.01 * seed, 0.65 + 0.01 * seed, 0.40 + 0.01 * seed, 0.55]


def shifted(shift_by_case, seeds=8) -> list[list[float]]:
    return [[b + s for b, s in zip(base_cases(seed), shift_by_case)] for seed in range(seeds)]


def v2_results(gain_1: float, gain_2: float) -> dict:
    """scratch and both primary methods at 1 and 2 volumes over 8 seeds; each method's gain on every case and seed."""
    finetunes = {}
    for setting, gain in (("finetune_1", gain_1), ("finetune_2", gain_2)):
        finetunes.update(v2_arm("scratch", setting, shifted([0.0] * 4)))
        for method in ("semcl_exact", "semcl_coarse"):
            finetunes.update(v2_arm(method, setting, shifted([gain] * 4)))
    return finetunes


def test_primary_verdict_reports_holm_next_to_raw_p_when_the_method_wins():
    from semcl_benchmark.report.endpoints import primary_family, run_family
    from semcl_benchmark.report.verdict import primary_verdict

    report = text(primary_verdict(run_family(v2_results(0.06, 0.06), primary_family())))
    # ahead on all 8 seeds: p = 2/2**8 = 0.0078 each; Holm over 4: 4 x 0.0078 = 0.0312 for all (monotone)
    assert report.count("**gain**, difference +0.060 [+0.060, +0.060], p = 0.0078, Holm p = 0.0312, 8 paired") == 4
    assert "the estimate reaches the +0.05 target" in report
    assert "Of 4 primary tests with results, 4 show a significant gain and 0 a significant loss (Holm p < 0.05)." in report


def test_primary_verdict_when_the_method_loses_or_is_not_told_apart():
    from semcl_benchmark.report.endpoints import primary_family, run_family
    from semcl_benchmark.report.verdict import primary_verdict

    finetunes = v2_results(-0.03, 0.0)
    mixed = [[0.02] * 4 if seed % 2 else [-0.02] * 4 for seed in range(8)]  # ahead on half the seeds
    finetunes["semcl_coarse", "finetune_2", False] = {
        s: v2_run("semcl_coarse", "finetune_2", s, [b + d for b, d in zip(base_cases(s), mixed[s])]) for s in range(8)}
    report = text(primary_verdict(run_family(finetunes, primary_family())))
    assert "finetune_1: `semcl_exact` vs `scratch`: **loss**, difference -0.030" in report
    assert "finetune_2: `semcl_coarse` vs `scratch`: **no significant difference**" in report
    assert "0 show a significant gain and 2 a significant loss" in report
    assert "the estimate is below the +0.05 target" in report
    # no test at all: no verdict, and the declared family's size is named
    assert "none of the 4 primary tests" in text(primary_verdict([]))


def test_a_partial_family_is_corrected_over_every_declared_test():
    """Only one of the 4 primary tests has runs: its Holm p is over 4 tests (the others count as p = 1), not over 1."""
    from semcl_benchmark.report.endpoints import primary_family, run_family
    from semcl_benchmark.report.verdict import primary_verdict

    finetunes = {key: runs for key, runs in v2_results(0.06, 0.06).items()
                 if key[1] == "finetune_1" and key[0] != "semcl_coarse"}
    (outcome,) = run_family(finetunes, primary_family())
    assert outcome.p == pytest.approx(2 / 2**8) and outcome.holm_p == pytest.approx(4 * 2 / 2**8)
    report = text(primary_verdict([outcome]))
    assert "Of 1 primary tests with results (3 of 4 without results yet), 1 show a significant gain" in report


def test_the_secondary_families_are_the_planned_comparisons():
    """At 4 labelled volumes only the arms planned there are tested; a planned test without runs still counts."""
    from semcl_benchmark.report.endpoints import secondary_families

    keys = {(a, s, False) for a in ("scratch", "simclr", "supervised", "semcl_exact", "semcl_coarse")
            for s in ("finetune_1", "finetune_2")}
    keys |= {(a, "finetune_4", False) for a in ("scratch", "atlas", "semcl_exact", "semcl_coarse", "semcl_labelled")}
    baselines, more = secondary_families(keys).values()
    assert len(baselines) == 8 and {t.baseline for t in baselines} == {"simclr", "supervised"}
    assert [(t.method, t.baseline) for t in more] == [
        ("semcl_coarse", "scratch"), ("semcl_exact", "scratch"), ("semcl_labelled", "scratch")]


def test_a_run_that_stops_below_scratchs_best_counts_as_slower():
    """Issue 21's time to accuracy: a seed that never reaches scratch's best is ranked slowest, even when the arm's run
    stopped (early stopping) before the step at which scratch reached its best."""
    from semcl_benchmark.report.time_to_accuracy import reach

    scratch_curve = [[50, 0.3, 10.0], [100, 0.5, 20.0], [150, 0.45, 30.0]]  # best at step 200
    early = [[25, 0.3, 5.0], [50, 0.35, 10.0]]  # stops at step 100, never reaching 0.5
    finetunes = {**v2_arm("scratch", "finetune_1", shifted([0.0] * 4), curve=scratch_curve),
                 **v2_arm("semcl_exact", "finetune_1", shifted([0.0] * 4), curve=early)}
    result = reach(finetunes, "semcl_exact", "finetune_1")
    assert result.reached == 0 and result.faster == 0 and result.p == pytest.approx(2 / 2**8)


def test_the_upper_bound_is_plotted_at_its_number_of_labelled_volumes():
    from semcl_benchmark.report.plots import labelled_volumes

    upper = v2_arm("scratch", "finetune_all", shifted([0.0] * 4, seeds=3))
    for run in upper["scratch", "finetune_all", False].values():
        run["labelled_cases"] = [{"case": f"phantom_{i:03d}"} for i in range(12)]
    assert labelled_volumes("finetune_all", upper) == 12 and labelled_volumes("finetune_4", upper) == 4
    assert labelled_volumes("finetune_all", {}) is None


def test_a_single_seed_is_not_called_no_significant_difference():
    from semcl_benchmark.report.endpoints import Test, run_family

    finetunes = {**v2_arm("scratch", "finetune_4", shifted([0.0], seeds=1)),
                 **v2_arm("semcl_exact", "finetune_4", shifted([0.3], seeds=1))}
    (outcome,) = run_family(finetunes, [Test("semcl_exact", "scratch", "finetune_4")])
    assert outcome.seeds == 1 and outcome.direction == "not testable: 1 seed" and not outcome.significant


def test_a_setting_where_nothing_validates_gets_no_empty_curve_plot(tmp_path):
    """Only the atlases have finished at 4 volumes: they have no validation curve, so no empty plot is drawn."""
    from semcl_benchmark.report.plots import plots_section

    finetunes = {**arm_runs("scratch", "finetune_1", [0.8, 0.7]), **arm_runs("atlas", "finetune_4", [0.3, 0.2])}
    for run in finetunes["atlas", "finetune_4", False].values():
        del run["validation_curve"]
    lines = text(plots_section(finetunes, ["scratch", "atlas"], ["finetune_1", "finetune_4"], tmp_path / "plots",
                               tmp_path / "RESULTS.md"))
    assert "validation_curve_finetune_1.png" in lines and (tmp_path / "plots" / "validation_curve_finetune_1.png").exists()
    assert "validation_curve_finetune_4" not in lines and not (tmp_path / "plots" / "validation_curve_finetune_4.png").exists()


def test_too_few_seeds_for_holm_is_said():
    from semcl_benchmark.report.endpoints import primary_family, run_family
    from semcl_benchmark.report.verdict import primary_verdict

    finetunes = {key: {s: r for s, r in runs.items() if s < 5} for key, runs in v2_results(0.06, 0.06).items()}
    report = text(primary_verdict(run_family(finetunes, primary_family())))
    # 5 seeds: smallest p 0.0625, x 4 tests = 0.25
    assert "With 5 seeds and 4 tests the smallest possible Holm p is 0.2500" in report
    assert "**no significant difference**" in report and "**gain**" not in report


def test_per_phase_groups_test_cases_by_contrast_phase():
    from semcl_benchmark.report.endpoints import per_phase, primary_family

    finetunes = {**v2_arm("scratch", "finetune_1", shifted([0.0] * 4)),
                 **v2_arm("semcl_exact", "finetune_1", shifted([0.1, 0.1, -0.2, 0.0]))}
    report = text(per_phase(finetunes, primary_family()))
    # the family: the 4 primary tests in each of the 3 phases, 12 tests, of which 3 have runs
    assert ("Test cases per phase: arterial 2, native 1, venous 1. Holm over the 12 declared tests of this family (9 "
            "without results yet, counted as p = 1).") in report
    assert ("| arterial | finetune_1 | `semcl_exact` | `scratch` | +0.100 [+0.100, +0.100] | 0.0078 | 0.0938 | 8 "
            "| no sig") in report
    assert ("| native | finetune_1 | `semcl_exact` | `scratch` | -0.200 [-0.200, -0.200] | 0.0078 | 0.0938 | 8 "
            "| no sig") in report
    assert "| venous | finetune_1 | `semcl_exact` | `scratch` | +0.000" in report
    assert "smallest possible" not in report  # the planned seeds not given: no note on what the design can reach
    # 12 tests over 8 planned seeds: the smallest Holm p is 12 x 2 / 2^8, above 0.05 even if every seed agreed
    assert ("With 8 seeds and 12 tests the smallest possible Holm p is 0.0938: no test of this family can reach p < "
            "0.05 even with all 8 seeds the protocol plans for it") in text(per_phase(finetunes, primary_family(), 8))
    assert per_phase({key: {s: {**r, "test": {k: v for k, v in r["test"].items() if k != "contrast_phases"}}
                            for s, r in runs.items()} for key, runs in finetunes.items()}, primary_family()) == []


def test_diagnosis_v2_claims_headroom_only_from_an_upper_bound_and_reads_atlases():
    from semcl_benchmark.report import diagnosis_v2

    finetunes = {**v2_results(0.01, 0.01), **v2_arm("atlas", "finetune_1", shifted([-0.2] * 4)),
                 **v2_arm("atlas_body_box", "finetune_1", shifted([0.05] * 4))}
    arms = ["scratch", "semcl_exact", "semcl_coarse", "atlas", "atlas_body_box"]
    report = text(diagnosis_v2(finetunes, {}, arms, ["finetune_1", "finetune_2"], V2))
    assert "**Headroom not measured.** No upper-bound run (`scratch` on `finetune_all`)" in report
    assert "eadroom." not in report.replace("Headroom not measured.", "") and "Little headroom" not in report
    assert "finetune_1: `scratch` minus `atlas` +0.200 [+0.200, +0.200] (training beats the atlas)" \
        in report
    assert "`scratch` minus `atlas_body_box` -0.050 [-0.050, -0.050] (the atlas beats training)" in report
    # the gallbladder-like organ: both organs alike here, so nothing is below 0.5 in every arm and setting
    assert "Organs below" not in report
    finetunes.update(v2_arm("scratch", "finetune_all", shifted([0.2] * 4)))
    report = text(diagnosis_v2(finetunes, {}, arms, ["finetune_1", "finetune_2", "finetune_all"], V2))
    assert "**Headroom.** `scratch` with every training volume labelled (`finetune_all`, 8 seeds) reaches 0.776 [" \
        in report
    assert "over `finetune_1` +0.200 [+0.200, +0.200] (paired over 8 seeds)" in report and "no test" in report
    upper = finetunes[("scratch", "finetune_all", False)]
    finetunes[("scratch", "finetune_all", False)] = {seed: upper[seed] for seed in list(upper)[:1]}
    report = text(diagnosis_v2(finetunes, {}, arms, ["finetune_1", "finetune_2", "finetune_all"], V2))
    assert "(`finetune_all`, 1 seed) reaches" in report and "(paired over 1 seed)" in report
    assert "1 seeds" not in report


def test_diagnosis_v2_names_organs_below_and_what_the_upper_bound_reaches():
    from semcl_benchmark.report import diagnosis_v2

    low = v2_results(0.0, 0.0)
    low.update(v2_arm("scratch", "finetune_all", shifted([0.0] * 4)))
    for runs in low.values():
        for run in runs.values():
            run["test"]["dice"] = [[0.8, 0.3] for _ in run["test"]["dice"]]  # the second organ stays at 0.3
    low["scratch", "finetune_all", False] = {s: {**r, "test": {**r["test"], "dice": [[0.9, 0.7]] * 4}}
                                             for s, r in low["scratch", "finetune_all", False].items()}
    report = text(diagnosis_v2(low, {}, ["scratch", "semcl_exact"], ["finetune_1", "finetune_2", "finetune_all"], V2))
    assert "**Organs below 0.5 in every trained arm and setting:** gallbladder (nan voxels per test case, Dice " \
           "0.30-0.30). With every training volume labelled, `scratch` reaches gallbladder 0.70." in report
    assert "small at this image size" not in report and "whatever the" not in report


def test_time_to_accuracy_pairs_seeds_and_counts_those_not_reached():
    from semcl_benchmark.report.time_to_accuracy import time_to_accuracy

    scratch_curve = [[50, 0.3, 10.0], [100, 0.5, 20.0], [150, 0.45, 30.0]]  # best 0.5 at step 200, 20 s
    fast = [[50, 0.5, 12.0], [100, 0.6, 24.0]]  # reaches 0.5 at step 100, 12 s
    never = [[50, 0.3, 12.0], [100, 0.4, 24.0]]
    finetunes = {**v2_arm("scratch", "finetune_1", shifted([0.0] * 4, seeds=4), curve=scratch_curve)}
    finetunes["semcl_exact", "finetune_1", False] = {
        s: v2_run("semcl_exact", "finetune_1", s, base_cases(s), curve=fast if s < 3 else never) for s in range(4)}
    report = text(time_to_accuracy(finetunes, ["scratch", "semcl_exact"], ["finetune_1"]))
    assert "| finetune_1 | `semcl_exact` | 3 of 4 (not reached: 1) | 100 | 12 s | 200 | 20 s | 0.50 |" in report
    assert "`scratch` |" not in report.split("| --- |")[-1]  # scratch is the reference, not a row


def test_time_to_accuracy_reads_test_dice_at_budget_fractions():
    from semcl_benchmark.report.time_to_accuracy import time_to_accuracy

    def with_fraction(arm, gain):
        runs = v2_arm(arm, "finetune_1", shifted([0.0] * 4))
        for seed, run in runs[arm, "finetune_1", False].items():
            cases = [c + gain - 0.2 for c in base_cases(seed)]
            run["budget_fractions"] = {"scratch_best_epoch": 100, "points": [
                {"fraction": 0.25, "epoch": 25, "step": 50, "model": "snapshot",
                 "test": {**run["test"], "dice": [[c, c] for c in cases]}}]}
        return runs

    finetunes = {**with_fraction("scratch", 0.0), **with_fraction("semcl_exact", 0.1)}
    report = text(time_to_accuracy(finetunes, ["scratch", "semcl_exact"], ["finetune_1"]))
    assert "Holm over the 1 declared test of this family." in report
    assert "| finetune_1 @ 0.25 | `semcl_exact` | `scratch` | +0.100 [+0.100, +0.100] | 0.0078 | 0.0078 | 8 | gain |" \
        in report


def test_runs_at_their_cap_while_improving_collapse_and_supervised_plateau():
    from semcl_benchmark.report.baselines import baselines_at_their_best
    from semcl_benchmark.stages import collapse

    extended = {"max_epochs": [400, 800], "capped_while_improving": False}  # a budget extension to 800 epochs
    finetunes = {("scratch", "finetune_1", False): {
        0: v2_run("scratch", "finetune_1", 0, base_cases(0), epochs=400, best_epoch=350),  # improving at the cap
        1: v2_run("scratch", "finetune_1", 1, base_cases(1), epochs=400, best_epoch=300),  # stopped by patience
        2: v2_run("scratch", "finetune_1", 2, base_cases(2), epochs=250, best_epoch=150),  # early stop before cap
        3: v2_run("scratch", "finetune_1", 3, base_cases(3), epochs=600, best_epoch=450, budget=extended),  # below 800
    }}
    monitors = {0: (0.95, 1.1), 1: (0.6, 8.0), 2: (0.1, 3.0), 3: (0.1, 9.0)}  # negative cosine, effective rank
    pretrains = {
        # as the benchmark records a contrastive pretraining: its collapse monitors and the writer's verdict
        "simclr": {s: {"summary": {}, "collapse": collapse([{"mean_effective_rank": r, "mean_negative_cosine": c}])}
                   for s, (c, r) in monitors.items()},
        # supervised pretraining validates every 15 epochs with a patience of 2 (its arm's settings): a window of 30
        "supervised": {s: {"config": {"pretrain": {"max_epochs": 60}, "arm_settings": {
            "workflow": "train.yaml", "val_interval": 15, "early_stop_patience": 2}}, "summary": {
            "best_metric_epoch": b, "epochs_completed": 60, "max_epochs": 60, "best_metric": 0.5}} for s, b in
            enumerate([60, 40, 20])},
    }
    report = text(baselines_at_their_best(finetunes, pretrains))
    assert "| finetune_1 | `scratch` | 4 | 2 | 1 | 0 |" in report
    assert "`scratch` finetune_1 seed 0" in report and "`scratch` finetune_1 seed 1" not in report
    assert "Still improving at the cap (3; " in report
    assert "`supervised` pretraining seed 0" in report and "`supervised` pretraining seed 1" in report
    assert "`supervised` pretraining seed 2" not in report
    assert "effective rank < 1.5 or negative cosine > 0.9" in report
    assert "| `simclr` | 1.1 / 0.95 | 8.0 / 0.60 | 3.0 / 0.10 | 9.0 / 0.10 | 1 of 4 | 2 of 4 |" in report
    assert "| `supervised` | 1 of 3 | 40 | 60 | 0.500 | 3 |" in report
    assert "Budget doubled, as the protocol fixes for a run still improving at its cap (1; " in report
    assert "`scratch` finetune_1 seed 3 (caps [400, 800], best epoch 450 of 600)" in report
    del finetunes[("scratch", "finetune_1", False)][3]
    assert "Budget doubled" not in text(baselines_at_their_best(finetunes, pretrains))
    # a validating pretraining's extension reads its epochs from its summary, as its budget does
    supervised = pretrains["supervised"][1]
    pretrains["supervised"][1] = {**supervised, "budget": {"max_epochs": [60, 120], "capped_while_improving": False},
                                  "summary": {**supervised["summary"], "epochs_completed": 90, "best_metric_epoch": 70}}
    assert "`supervised` pretraining seed 1 (caps [60, 120], best epoch 70 of 90)" in text(
        baselines_at_their_best(finetunes, pretrains))


def test_deviations_are_listed_and_checked():
    from semcl_benchmark.report.endpoints import deviations_section

    assert "None recorded" in text(deviations_section(V2))
    entry = {"text": "fine-tuning max_epochs 400 -> 800", "date": "2026-12-02", "reason": "3 runs improving at cap"}
    size = SimpleNamespace(**{**V2.__dict__, "deviations": [entry]})
    assert "| 2026-12-02 | fine-tuning max_epochs 400 -> 800 | 3 runs improving at cap |" in text(deviations_section(size))
    bad = SimpleNamespace(**{**V2.__dict__, "deviations": [{"text": "x", "date": "2026-12-02"}]})
    with pytest.raises(ValueError, match=r"size 'v2test': deviations\[0\] lacks reason"):
        deviations_section(bad)


def test_file_provenance_counts_dirty_trees_and_partial_encoder_loads():
    from semcl_benchmark.report.provenance import file_provenance

    results = {
        "a": {"code": "abc1234"},
        "b": {"code": "abc1234+changes"},  # v1's mark of a dirty tree
        "c": {"code": "def5678", "allow_dirty": True, "encoder": {"sha256": "f" * 64, "loaded_fraction": 0.5}},
        "d": {"encoder": {"sha256": "e" * 64, "loaded_fraction": 1.0}},
    }
    report = text(file_provenance(results))
    assert "- 4 files from 2 commit(s): abc1234, def5678." in report
    assert "- From a working tree with uncommitted changes: 2 (b, c)." in report
    assert "- Without a recorded commit: 1." in report
    assert "Encoder recorded (SHA-256 and loaded share of its keys): 2 files; loaded less than all keys: 1 (c)." in report
    assert "| c | def5678 | yes | ffffffffffffffff | 0.500 |" in report


def test_probe_against_a_frozen_random_encoder():
    from semcl_benchmark.report.endpoints import probe_section

    finetunes = {**v2_arm("scratch", "finetune_2", shifted([-0.3] * 4), probe=True),
                 **v2_arm("semcl_exact", "finetune_2", shifted([-0.1] * 4), probe=True)}
    report = text(probe_section(finetunes, V2))
    assert "| `scratch` (frozen random encoder) |" in report
    assert "| finetune_2 | `semcl_exact` | `scratch` | +0.200 [+0.200, +0.200] | 0.0078 | 0.0078 | 8 | gain |" in report
    assert "smallest possible Holm p" not in report
    # the protocol plans 3 probe seeds: the smallest two-sided p is 0.25, and the report says no test can reach 0.05
    few = {key: {s: r for s, r in runs.items() if s < 3} for key, runs in finetunes.items()}
    three = SimpleNamespace(**{**V2.__dict__, "probe_seeds": (0, 1, 2)})
    assert ("With 3 seeds and 1 test the smallest possible Holm p is 0.2500: no test of this family can reach p < "
            "0.05 even with all 3 seeds the protocol plans for it, so read its intervals.") \
        in text(probe_section(few, three))
    assert "until more seeds finish" in text(probe_section(few, V2))
    del finetunes["scratch", "finetune_2", True]
    assert "no control yet" in text(probe_section(finetunes, V2))


def test_the_size_decides_which_report(tmp_path):
    from semcl_benchmark.report import report_v1, report_v2
    from semcl_benchmark.report.records import is_v2

    assert is_v2(V2) and not is_v2(SimpleNamespace(name="v1", splits=None))
    finetunes = v2_results(0.06, 0.06)
    results = {run["key"]: run for runs in finetunes.values() for run in runs.values()}
    size = SimpleNamespace(**{**V2.__dict__, "data": {}, "network": {}, "pretrain": {}, "finetune": {},
                              "settings": ("finetune_1", "finetune_2"), "study_seeds": ()})
    for result in results.values():
        result.update(machine={"cpu": "x", "cores": 2, "torch": "2"}, finished="2026-12-01 10:00:00",
                      cost={"train": {"seconds": 1.0, "peak_memory_mb": 1.0}})
    planned = [Run(key, run["config"]) for key, run in results.items()]
    planned.append(Run("finetune__semcl_exact__finetune_2__seed9", {**planned[0].config, "seed": 9}))  # not finished
    report = text(report_v2(size, planned, results, tmp_path / "plots", tmp_path / "R.md", "cmd"))
    assert f"Runs finished: {len(results)} of {len(results) + 1} planned" in report
    assert "<details><summary>Runs not finished yet (1)</summary>" in report
    assert report.startswith("# Benchmark results: v2test size (protocol v2, `docs/PROTOCOL.md`)\n\n## Verdict (primary")
    for heading in ("## Deviations from the protocol", "## Diagnosis", "## Primary endpoint",
                    "## Per phase bucket", "## Time to accuracy", "## Were the arms trained to their best?",
                    "## Provenance of the result files"):
        assert heading in report
    assert "Holm" not in text(report_v1(size, [None] * len(results), results, tmp_path / "p1", tmp_path / "R1.md",
                                        "cmd"))


def committed_v1_reports() -> list[tuple[Path, str]]:
    """``(report, size name)`` of every committed report of a v1 size (``docs/RESULTS*.md``, named in its title)."""
    from semcl_tools.repository import ROOT

    found = []
    for report in sorted((ROOT / "docs").glob("RESULTS*.md")):
        match = re.fullmatch(r"# Benchmark results: (\S+) size", report.read_text().splitlines()[0])
        if match:
            found.append((report, match.group(1)))
    return found


@pytest.mark.parametrize("report, size_name", committed_v1_reports())
def test_v1_report_regenerates_unchanged(tmp_path, report, size_name):
    from semcl_benchmark.protocol import load_protocol
    from semcl_benchmark.report import report_v1
    from semcl_benchmark.results import results_folder
    from semcl_benchmark.runner import Benchmark
    from semcl_tools.repository import ROOT

    protocol = load_protocol()
    size = protocol.sizes[size_name]
    folder = results_folder(size_name)
    benchmark = Benchmark(size, folder, tmp_path / "work", protocol=protocol)
    planned = benchmark.plan(list(size.arms), list(size.settings), list(size.seeds), study=list(size.study_arms))
    committed = report.read_text().splitlines()
    command = next(line for line in committed if line.startswith("- Command: `")).split("`")[1]
    plots, copy = tmp_path / folder.relative_to(ROOT) / "plots", tmp_path / report.relative_to(ROOT)
    lines = report_v1(size, planned, benchmark.store.load(planned), plots, copy, command)
    undated = [line for line in "\n".join(lines).splitlines() if not line.startswith("- Report written")]
    assert undated == [line for line in committed if not line.startswith("- Report written")]


# ------------------------------------------------------------------------------------------- difficulty criteria

DIFFICULTY = SimpleNamespace(seeds=(0, 1, 2), settings=("finetune_1", "finetune_4", "finetune_8"),
                             arms=("scratch", "atlas", "atlas_body_box", "atlas_centroid"))


def difficulty_results(few: float, atlas: float, organ: float = 0.8, seconds: float = 300.0, seeds=(0, 1, 2)) -> dict:
    """scratch at 1, 4 and 8 volumes (Dice ``few``, 0.7, and at 8 volumes 0.9 and ``organ`` for the second organ) and
    three atlases at 4 volumes (the best at ``atlas``), on every test case; scratch trains ``seconds``, plateaus at 200."""

    def runs(arm, setting, dice, second=None, **extra):
        return {(arm, setting, False): {s: v2_run(arm, setting, s, [0.0] * 4, **extra) | {
            "test": {"classes": ORGANS, "cases": [f"case{i}" for i in range(4)], "contrast_phases": PHASES,
                     "dice": [[dice, dice if second is None else second] for _ in range(4)]}} for s in seeds}}

    cost = {"cost": {"train": {"seconds": seconds, "peak_memory_mb": 1.0}}, "best_epoch": 200}
    return {**runs("scratch", "finetune_1", few, **cost), **runs("scratch", "finetune_4", 0.7, **cost),
            **runs("scratch", "finetune_8", 0.9, second=organ, **cost),
            **runs("atlas", "finetune_4", atlas - 0.1), **runs("atlas_body_box", "finetune_4", atlas),
            **runs("atlas_centroid", "finetune_4", atlas - 0.2)}


def criteria_rows(report: str) -> dict[str, str]:
    """``{criterion name's first word: its table row}``."""
    return {line.split("|")[1].split()[0]: line for line in report.splitlines() if line.startswith("| ") and
            line.split("|")[1].split() and line.split("|")[1].split()[0] in ("Headroom", "Learning", "Coverage", "Cost")}


def test_difficulty_criteria_hold():
    from semcl_benchmark.report.difficulty import difficulty_criteria

    report = text(difficulty_criteria(difficulty_results(few=0.6, atlas=0.5), DIFFICULTY,
                                      reference={"finetune_1": [150.0, 250.0]}))
    rows = criteria_rows(report)
    assert "4 of 4 criteria hold, 0 fail, 0 not measured yet" in report
    # scratch at 8 (mean of 0.9 and 0.8 = 0.85) minus at 1 (0.6), every seed
    assert "+0.250 mean over 3 seeds (seed 0 +0.250, seed 1 +0.250, seed 2 +0.250)" in rows["Headroom"]
    assert "best `atlas_body_box`" in rows["Learning"] and "+0.200 (`scratch` 0.700" in rows["Learning"]
    assert "below 0.5: none" in rows["Coverage"] and "every organ in every phase" in rows["Coverage"]
    assert "finetune_1: 1.50 x v1 (recorded seconds: 300 s against 200 s per run, 3 runs)" in rows["Cost"]
    assert all(row.endswith("| **holds** |") for row in rows.values())
    assert "| finetune_8 | 3 | 300 | - | - | 200 (200-200) | 200 | - |" in report  # v1 never ran 8 volumes; no CPU time
    assert "| 0.900 | 0.800 |" in report  # per-organ Dice of scratch at 8 volumes


def test_difficulty_criteria_fail():
    from semcl_benchmark.report.difficulty import difficulty_criteria

    results = difficulty_results(few=0.8, atlas=0.65, organ=0.4, seconds=500.0)
    for run in (r for runs in results.values() for r in runs.values()):  # no native test case holds the gallbladder
        run["test"]["dice"][2][1] = None
    report = text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]}))
    rows = criteria_rows(report)
    assert "0 of 4 criteria hold, 4 fail" in report
    # 8 volumes: 3 cases at (0.9 + 0.4) / 2, the native case at 0.9 (no gallbladder) = 0.7125; minus 0.8
    assert "-0.088 mean over 3 seeds" in rows["Headroom"]
    assert "+0.050 (`scratch` 0.700" in rows["Learning"]
    assert "below 0.5: gallbladder 0.400" in rows["Coverage"] and "absent: gallbladder in native" in rows["Coverage"]
    assert "2.50 x v1" in rows["Cost"]
    assert all(row.endswith("| **fails** |") for row in rows.values())


def test_difficulty_cost_compares_only_settings_v1_ran():
    """8 volumes per epoch cost more than v1's 1 or 2 by construction: the criterion compares like with like."""
    from semcl_benchmark.report.difficulty import difficulty_criteria, reference_seconds

    results = difficulty_results(few=0.6, atlas=0.5, seconds=300.0)
    for run in results["scratch", "finetune_8", False].values():
        # the fixture's runs share one dict; these waited half the time for a CPU
        run["cost"] = {"train": {"seconds": 5000.0, "cpu_seconds": 2500.0, "peak_memory_mb": 1.0}}
    rows = criteria_rows(text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]})))
    assert "finetune_1: 1.50 x v1" in rows["Cost"] and "finetune_8" not in rows["Cost"]
    assert "| finetune_8 | 3 | 5000 | - | - | 200 (200-200) | 200 | 0.50 |" in text(
        difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]}))
    assert rows["Cost"].endswith("| **holds** |")
    rows = criteria_rows(text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_2": [200.0]})))
    assert "no v1 `scratch` run in finetune_1, finetune_4, finetune_8" in rows["Cost"]
    # v1's committed scratch runs, by setting (8 seeds each; the probes left out)
    v1 = reference_seconds()
    assert sorted(v1) == ["finetune_1", "finetune_2"] and [len(v) for v in v1.values()] == [8, 8]


def test_difficulty_cost_uses_the_paired_epoch_cost_and_the_epochs_per_run(tmp_path):
    """Seconds recorded on different days and machines do not compare: where a paired measurement of an epoch's cost
    exists, the criterion is that ratio times the ratio of the epochs a run lasted."""
    from semcl_benchmark.report.difficulty import difficulty_criteria, read_cost_ratio

    results = difficulty_results(few=0.6, atlas=0.5, seconds=300.0)  # 200 epochs per run; 1.50 x v1 by seconds
    paired = {"reference": "v1", "setting": "finetune_1", "ratio_median": 1.5, "rounds": [{}, {}, {}],
              "finished": "2026-11-30 20:00:00"}
    report = text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]}, paired=paired,
                                      epochs={"finetune_1": [100, 100]}))
    row = criteria_rows(report)["Cost"]
    # 1.5 x (200 / 100) epochs = 3.0: fails, although the recorded seconds alone (1.50) would hold
    assert "finetune_1: 3.00 x v1 (an epoch 1.50 x v1's (median of 3 rounds" in row
    assert "2.00 x v1's epochs per run (200 against 100); recorded seconds 1.50 x v1" in row
    assert row.endswith("| **fails** |")
    assert "| finetune_1 | 3 | 300 | 1.50 | 3.00 |" in report
    row = criteria_rows(text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]}, paired=paired,
                                                 epochs={"finetune_1": [400]})))["Cost"]
    assert "finetune_1: 0.75 x v1" in row and row.endswith("| **holds** |")
    # a measurement of another setting leaves the recorded seconds in charge
    other = {**paired, "setting": "finetune_2"}
    row = criteria_rows(text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]}, paired=other,
                                                 epochs={"finetune_1": [100]})))["Cost"]
    assert "finetune_1: 1.50 x v1 (recorded seconds" in row
    # the file in a results folder: read when it was measured against v1
    assert read_cost_ratio(tmp_path) is None
    (tmp_path / "cost_ratio.json").write_text(json.dumps(paired))
    assert read_cost_ratio(tmp_path) == paired
    (tmp_path / "cost_ratio.json").write_text(json.dumps({**paired, "reference": "quick"}))
    assert read_cost_ratio(tmp_path) is None


def test_difficulty_criteria_wait_for_missing_runs():
    from semcl_benchmark.report.difficulty import difficulty_criteria

    results = difficulty_results(few=0.6, atlas=0.5, seeds=(0, 1))  # seed 2 has not finished
    del results["atlas_centroid", "finetune_4", False]
    report = text(difficulty_criteria(results, DIFFICULTY, reference={"finetune_1": [200.0]}))
    rows = criteria_rows(report)
    assert "0 of 4 criteria hold, 0 fail, 4 not measured yet" in report
    assert "+0.250 mean over 2 seeds" in rows["Headroom"]  # the value so far is shown
    assert "not measured yet (2 runs missing: `scratch` finetune_8 seed 2, `scratch` finetune_1 seed 2)" \
        in rows["Headroom"]
    assert "`atlas_centroid` finetune_4 seed 0" in rows["Learning"]
    assert "**not measured yet" in rows["Coverage"] and "**not measured yet" in rows["Cost"]
