"""The benchmark report's diagnosis: each point computed from the result files, its wording following the numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

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
