"""Analyse: what bounds the method's gain, each point a measurement from the result files, and what the v2 runs do
not support (issue 34, item 3): where the intervals still allow the target gain, each arm at its own best epoch, the
seeds a headroom figure pairs, how much the seeds' draws overlap, and the masks beyond the labelled volumes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..statistics import Estimate
from .endpoints import REFERENCE, TARGET_GAIN, UPPER_BOUND_SETTING, Outcome, compare, grid, is_method
from .load import runs_of

__all__ = ["Draws", "Gap", "LowOrgan", "OwnBest", "SettingCeiling", "draws", "gaps", "low_organs", "noise",
           "own_best", "pool_mask_arms", "setting_ceilings"]

SMALL_ORGAN_DICE = 0.5  # organs below this in every trained arm and setting are named


@dataclass(frozen=True)
class Gap:
    """``arm`` minus ``baseline`` in a setting, paired over ``seeds``; ``relation``: ``above``, ``below`` or
    ``includes 0`` (where the interval lies)."""

    setting: str
    difference: Estimate
    seeds: list[int]
    relation: str


def gaps(runs: pd.DataFrame, arm: str, arm_setting: str | None, baseline: str, settings: list[str]) -> list[Gap]:
    """``arm`` (in ``arm_setting``, else the same setting) minus ``baseline`` per setting, paired by seed."""
    found = []
    for setting in settings:
        a, b = runs_of(runs, arm, arm_setting or setting), runs_of(runs, baseline, setting)
        if (result := compare(a, b)) is not None:
            d = result[0]
            relation = "above" if d.low > 0 else "below" if d.high < 0 else "includes 0"
            found.append(Gap(setting, d, sorted(set(a) & set(b)), relation))
    return found


@dataclass(frozen=True)
class Noise:
    """Per method arm and setting, the seeds ahead of ``scratch``; the spread of the paired differences."""

    ahead: list[tuple[str, str, int, int]]  # (arm, setting, seeds ahead, seeds)
    sd_low: float
    sd_high: float
    seeds: int
    smallest_p: float


def noise(runs: pd.DataFrame, methods: list[str], settings: list[str]) -> Noise | None:
    """On how many seeds each method is ahead of ``scratch``, and the smallest two-sided Wilcoxon p."""
    ahead, spreads, most = [], [], 0
    for arm in methods:
        for setting in settings:
            a, b = runs_of(runs, arm, setting), runs_of(runs, REFERENCE, setting)
            seeds = sorted(set(a) & set(b))
            if len(seeds) > 1:
                d = np.array([np.nanmean(grid(a, [s])) - np.nanmean(grid(b, [s])) for s in seeds])
                ahead.append((arm, setting, int((d > 0).sum()), len(d)))
                spreads.append(float(np.std(d, ddof=1)))
                most = max(most, len(d))
    return Noise(ahead, min(spreads), max(spreads), most, 2 / 2**most) if ahead else None


@dataclass(frozen=True)
class LowOrgan:
    name: str
    voxels: float  # per test case
    low: float
    high: float
    upper_bound: float | None  # scratch with every training volume labelled


def low_organs(runs: pd.DataFrame, arms: list[str], settings: list[str]) -> list[LowOrgan]:
    """Organs below :data:`SMALL_ORGAN_DICE` in every trained arm and setting, with their size in the test cases."""
    means: dict[str, list[float]] = {}
    voxels: dict[str, float] = {}
    classes: list[str] = []
    for arm, setting in itertools.product(arms, settings):
        if not (found := runs_of(runs, arm, setting)):
            continue
        example = next(iter(found.values()))
        classes = example["test"]["classes"]
        for organ, name in enumerate(classes):
            means.setdefault(name, []).append(float(np.nanmean(grid(found, sorted(found), organ=organ))))
        if matrix := example.get("confusion_matrix"):
            voxels.update(zip(matrix["classes"], np.asarray(matrix["counts"]).sum(axis=1) / len(example["test"]["cases"])))
    upper = runs_of(runs, REFERENCE, UPPER_BOUND_SETTING)
    return [LowOrgan(name, voxels.get(name, float("nan")), min(means[name]), max(means[name]),
                     float(np.nanmean(grid(upper, sorted(upper), organ=classes.index(name)))) if upper else None)
            for name in classes if means.get(name) and max(means[name]) < SMALL_ORGAN_DICE]


@dataclass(frozen=True)
class SettingCeiling:
    """The highest upper interval end of the method's comparisons with ``scratch`` in a setting: whether a gain of
    the target's size is excluded there."""

    setting: str
    highest: float
    target_excluded: bool


def setting_ceilings(outcomes: list[Outcome]) -> list[SettingCeiling]:
    """Per setting, over the method's outcomes against ``scratch``, the highest upper interval end."""
    by_setting: dict[str, float] = {}
    for o in outcomes:
        if is_method(o.test.method) and o.test.baseline == REFERENCE and o.seeds > 1:
            by_setting[o.test.setting] = max(by_setting.get(o.test.setting, -np.inf), o.difference.high)
    return [SettingCeiling(s, h, h < TARGET_GAIN) for s, h in by_setting.items()]


@dataclass(frozen=True)
class OwnBest:
    """An arm against ``scratch``, each at its own best validation (the endpoint) and at ``scratch``'s best epoch."""

    arm: str
    setting: str
    own_best: float
    at_scratch_best: float


def own_best(endpoint: list[Outcome], at_fractions: list[Outcome]) -> list[OwnBest]:
    """Pairs an outcome of the endpoint with the same test at the whole of ``scratch``'s budget (fraction 1)."""
    whole = {(o.test.method, o.test.setting.rsplit(" @ ", 1)[0]): o for o in at_fractions
             if o.test.setting.endswith(" @ 1")}
    return [OwnBest(o.test.method, o.test.setting, o.difference.mean, w.difference.mean) for o in endpoint
            if o.test.baseline == REFERENCE and (w := whole.get((o.test.method, o.test.setting))) is not None]


@dataclass(frozen=True)
class Draws:
    """How much the seeds' draws overlap: labelled volumes per setting and pretraining pools (of the run records)."""

    seeds: int
    distinct: dict[str, int]  # setting -> distinct labelled volumes over the seeds
    phases_single: dict[str, int]  # contrast phase -> seeds whose single labelled volume is of that phase
    shared_sets: dict[str, list[tuple[int, ...]]]  # setting -> groups of seeds drawing the same volumes
    most_common: dict[str, tuple[str, int]]  # setting -> (volume, seeds whose draw holds it)
    pool_size: int
    pool_shared: tuple[int, int] | None  # fewest and most cases any two seeds' pretraining pools share
    pool_reconstructed: bool  # the pools were made again from the splits (v2 files do not record them)
    overlapping: bool  # two seeds share a draw, or two pools share a case


def draws(runs: pd.DataFrame) -> Draws | None:
    """The overlap of the seeds' labelled draws and pretraining pools; ``None`` where no run records a draw."""
    tested = runs[runs.stage.isin(("finetune", "atlas")) & ~runs.probe & runs.labelled.notna()
                  & (runs.setting != UPPER_BOUND_SETTING)]
    if tested.empty:
        return None
    sets = {s: dict(zip(g.seed, g.labelled.map(lambda c: tuple(sorted(c))))) for s, g in tested.groupby("setting")}
    seeds = sorted(set(tested.seed))
    shared = {}
    for setting, by_seed in sets.items():
        groups: dict[tuple, list[int]] = {}
        for seed, cases in sorted(by_seed.items()):
            groups.setdefault(cases, []).append(seed)
        shared[setting] = [tuple(g) for g in groups.values() if len(g) > 1]
    counts = {k: Counter(c for cases in v.values() for c in cases).most_common(1)[0] for k, v in sets.items()}
    singles = {s: r["labelled_cases"][0].get("contrast_phase") for s, r in zip(tested.seed, tested.record)
               if len(r.get("labelled_cases") or ()) == 1}
    pools = [set(g.iloc[0]) for _, g in tested.groupby("seed").pool]
    overlap = [len(a & b) for a, b in itertools.combinations(pools, 2)]
    return Draws(len(seeds), {k: len(set().union(*v.values())) for k, v in sets.items()},
                 dict(Counter(str(p) for p in singles.values())), shared, counts, len(pools[0]),
                 (min(overlap), max(overlap)) if overlap else None, bool(tested.reconstructed.any()),
                 any(shared.values()) or max(overlap, default=0) > 0)


def pool_mask_arms(runs: pd.DataFrame) -> list[str]:
    """Pretrained arms whose pretraining reads the label masks of the pretraining pool (class positives or
    supervised segmentation), beside the labelled volumes of their fine-tuning."""
    arms = []
    for arm in dict.fromkeys(runs[runs.stage == "pretrain"].arm):
        record = next(iter(runs_of(runs, arm, stage="pretrain").values()))
        summary, settings = record["summary"], record["config"].get("arm_settings") or {}
        uses_masks = summary.get("positives") == "class" or summary.get("workflow") == "train"
        if uses_masks and not settings.get("pretrain_key"):
            arms.append(arm)
    return arms
