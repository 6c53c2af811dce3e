"""Analyse: whether every arm was trained to its best (epoch caps, collapse, optimiser steps, a still-falling loss,
probe against full fine-tuning), what bounds the method's gain, and what the v2 runs do not support (issue 34 item 3).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..run_records import Budget
from ..statistics import Estimate
from .endpoints import (REFERENCE, TARGET_GAIN, UPPER_BOUND_SETTING, Outcome, compare, is_method, organ_means,
                        seed_differences)
from .load import by_arm, runs_of

__all__ = ["ArmBudget", "CapRow", "Caps", "CollapseRow", "Draws", "Gap", "LowOrgan", "OwnBest", "ProbeAgainstFull",
           "SettingCeiling", "caps", "collapse_rows", "draws", "gaps", "low_organs", "noise", "own_best",
           "pool_mask_arms", "pretraining_budgets", "probe_against_full", "setting_ceilings", "validating_rows"]

NEAR_COLLAPSE_NEGATIVE_COSINE = 0.5
NEAR_COLLAPSE_RANK = 4.0
FALLING_EPOCHS = 10
SMALL_ORGAN_DICE = 0.5  # organs below this in every trained arm and setting are named

#: The validating runs of one setting (``pretraining`` for pretraining), arm and probe: how many, how many at their
#: cap, still improving there (best validation within the last patience window), with their best at the last epoch.
CapRow = NamedTuple("CapRow", [("setting", str), ("arm", str), ("probe", bool), ("runs", int), ("capped", int),
                               ("improving", int), ("best_at_last", int)])
#: Fine-tuning runs (atlases have no budget), at their cap and still improving there; the rows with a capped run; the
#: runs whose budget was doubled ``(arm, setting, probe, seed, caps, best epoch, epochs)``, and those still improving
#: ``(arm, setting, probe, seed)``.
Caps = NamedTuple("Caps", [("total", int), ("capped", int), ("improving", int), ("rows", list), ("extended", list),
                           ("improving_runs", list)])
#: A contrastive arm's collapse monitors per seed ``{seed: (effective rank, negative cosine)}``, how many seeds
#: collapsed and how many were near collapse, and the run's collapse rule.
CollapseRow = NamedTuple("CollapseRow", [("arm", str), ("monitors", dict), ("collapsed", int), ("near", int),
                                         ("rule", dict)])
#: A contrastive pretraining's optimiser steps (median over seeds) and the seeds whose loss was still falling.
ArmBudget = NamedTuple("ArmBudget", [("arm", str), ("steps", int), ("falling", int), ("seeds", int)])
#: An arm's frozen-encoder probe (mean test Dice over its seeds) against its full fine-tuning ``{seed: Dice}``.
ProbeAgainstFull = NamedTuple("ProbeAgainstFull", [("arm", str), ("setting", str), ("probe", float), ("full", dict),
                                                   ("probe_above_every_full_run", bool)])
#: ``arm`` minus ``baseline`` in a setting, paired over ``seeds``; ``relation``: where the interval lies (``above``,
#: ``below`` or ``includes 0``).
Gap = NamedTuple("Gap", [("setting", str), ("difference", Estimate), ("seeds", list), ("relation", str)])
#: Per method arm and setting ``(arm, setting, seeds ahead of scratch, seeds)``; the spread (standard deviation) of
#: the paired differences; the most seeds of a pair and the smallest two-sided Wilcoxon p they allow.
Noise = NamedTuple("Noise", [("ahead", list), ("sd_low", float), ("sd_high", float), ("seeds", int),
                             ("smallest_p", float)])
#: An organ's voxels per test case, its lowest and highest Dice over the trained arms and settings, and ``scratch``'s
#: with every training volume labelled (``None``: not run).
LowOrgan = NamedTuple("LowOrgan", [("name", str), ("voxels", float), ("low", float), ("high", float),
                                   ("upper_bound", float | None)])
#: The highest upper interval end of the method against ``scratch`` in a setting; whether it excludes the target.
SettingCeiling = NamedTuple("SettingCeiling", [("setting", str), ("highest", float), ("target_excluded", bool)])
#: An arm against ``scratch``, each at its own best validation (the endpoint) and at ``scratch``'s best epoch.
OwnBest = NamedTuple("OwnBest", [("arm", str), ("setting", str), ("own_best", float), ("at_scratch_best", float)])
#: How much the seeds' draws overlap: per setting the distinct labelled volumes, the groups of seeds drawing the same
#: ones and the most drawn ``(volume, seeds)``; the seeds per phase of a single labelled volume; the pool size, the
#: fewest and most cases two pools share, whether the pools were reconstructed from the splits (v2 files do not
#: record them), and whether two seeds share a draw or two pools a case.
Draws = NamedTuple("Draws", [("seeds", int), ("distinct", dict), ("phases_single", dict), ("shared_sets", dict),
                             ("most_common", dict), ("pool_size", int), ("pool_shared", tuple | None),
                             ("pool_reconstructed", bool), ("overlapping", bool)])


#: A validating run's epochs, best epoch, whether at its cap, still improving there, best at the last epoch; its caps.
RunFlags = NamedTuple("RunFlags", [("epochs", int), ("best", int | None), ("capped", bool), ("improving", bool),
                                   ("best_at_last", bool), ("caps", list)])


def _flags(record: dict, pretraining: bool) -> RunFlags | None:
    """:class:`RunFlags` of a run that validates (``caps``: as recorded, ``[]`` without an extension); ``None``
    otherwise."""
    budget, config = Budget.of_run(record["config"], record), record["config"]
    if (pretraining and budget.best_epoch is None) or budget.epochs is None or not budget.max_epochs:
        return None
    settings = ({**(config.get("pretrain") or {}), **(config.get("arm_settings") or {})} if pretraining
                else config.get("finetune") or {})
    patience = settings.get("early_stop_patience")
    window = patience * settings.get("val_interval", 1) if patience else 0
    epochs, best, recorded = budget.epochs, budget.best_epoch, list((record.get("budget") or {}).get("max_epochs") or [])
    if epochs < budget.max_epochs[-1] or best is None:
        return RunFlags(epochs, best, epochs >= budget.max_epochs[-1], False, False, recorded)
    return RunFlags(epochs, best, True, best > epochs - window if window else best >= epochs, best >= epochs, recorded)


def caps(runs: pd.DataFrame) -> Caps:
    """Runs at their cap, still improving, with their budget doubled; by setting and arm (pretraining last)."""
    found = runs[runs.stage.isin(("finetune", "pretrain"))]
    keys = sorted(zip(found.setting.fillna("pretraining"), found.arm, found.probe, found.seed, found.record),
                  key=lambda key: key[:4])
    flagged = [(*key, f) for key in keys if (f := _flags(key[4], key[0] == "pretraining"))]
    rows = []
    for (where, arm, probe), group in itertools.groupby(flagged, key=lambda run: run[:3]):
        flags = [run[-1] for run in group]
        if capped := sum(f.capped for f in flags):
            rows.append(CapRow(where, arm, bool(probe), len(flags), capped, sum(f.improving for f in flags),
                               sum(f.best_at_last for f in flags)))
    tuned = [run[-1] for run in flagged if run[0] != "pretraining"]
    return Caps(len(tuned), sum(f.capped for f in tuned), sum(f.improving for f in tuned), rows,
                [(a, w, p, s, f.caps, f.best, f.epochs) for w, a, p, s, _, f in flagged if len(f.caps) > 1],
                [(a, w, p, s) for w, a, p, s, _, f in flagged if f.improving])


def _near_collapse(monitors: dict) -> bool:
    cosine = monitors.get("negative_cosine")
    high_cosine = cosine is not None and cosine >= NEAR_COLLAPSE_NEGATIVE_COSINE
    return not monitors["collapsed"] and (high_cosine or monitors["effective_rank"] < NEAR_COLLAPSE_RANK)


def collapse_rows(runs: pd.DataFrame) -> list[CollapseRow]:
    """Every pretraining arm whose runs record their collapse monitors (near collapse: a negative cosine of at least
    :data:`NEAR_COLLAPSE_NEGATIVE_COSINE` or an effective rank below :data:`NEAR_COLLAPSE_RANK`)."""
    rows = []
    for arm, found in by_arm(runs, "pretrain").items():
        if records := {s: r["collapse"] for s, r in sorted(found.items()) if r.get("collapse")}:
            monitors = {s: (r["effective_rank"], r.get("negative_cosine")) for s, r in records.items()}
            rows.append(CollapseRow(arm, monitors, sum(r["collapsed"] for r in records.values()),
                                    sum(map(_near_collapse, records.values())),
                                    next(iter(records.values())).get("rule") or {}))
    return rows


def validating_rows(runs: pd.DataFrame) -> list[tuple[str, int, float, float, float, int]]:
    """Pretraining that validates: ``(arm, best at the last epoch, median best epoch, median epochs, mean best Dice,
    seeds)``."""
    rows = []
    for arm, found in by_arm(runs, "pretrain").items():
        if summaries := [r["summary"] for r in found.values() if r["summary"].get("best_metric_epoch") is not None]:
            best, done = ([s[k] for s in summaries] for k in ("best_metric_epoch", "epochs_completed"))
            rows.append((arm, sum(b >= d for b, d in zip(best, done)), float(np.median(best)), float(np.median(done)),
                         float(np.mean([s["best_metric"] for s in summaries])), len(summaries)))
    return rows


def pretraining_budgets(runs: pd.DataFrame) -> list[ArmBudget]:
    """Optimiser steps and a still-falling loss (slope over the last :data:`FALLING_EPOCHS` epochs below 0) of every
    pretraining arm that records its loss per epoch."""
    budgets = []
    for arm, found in by_arm(runs, "pretrain").items():
        histories = [r.get("history") or [] for r in found.values()]
        losses = [[h["mean_loss"] for h in history] for history in histories
                  if len(history) >= FALLING_EPOCHS and all(h.get("mean_loss") is not None for h in history)]
        if len(losses) == len(histories) and losses and all(h[-1].get("iteration") for h in histories):
            slopes = [np.polyfit(np.arange(FALLING_EPOCHS), loss[-FALLING_EPOCHS:], 1)[0] for loss in losses]
            steps = int(np.median([h[-1]["iteration"] for h in histories]))
            budgets.append(ArmBudget(arm, steps, sum(s < 0 for s in slopes), len(losses)))
    return budgets


def probe_against_full(runs: pd.DataFrame, setting: str | None) -> list[ProbeAgainstFull]:
    """Every pretrained arm with probe runs: the probes' mean test Dice and the full fine-tuning of the same seeds."""
    found = []
    probes = runs[runs.probe & (runs.setting == setting) & (runs.arm != REFERENCE)]
    for arm, group in probes.groupby("arm", sort=False):
        full = runs[~runs.probe & (runs.arm == arm) & (runs.setting == setting) & runs.seed.isin(group.seed)]
        if len(full):
            probe, dice = float(group.mean_dice.mean()), dict(zip(full.seed.astype(int), full.mean_dice.astype(float)))
            found.append(ProbeAgainstFull(arm, setting, probe, dice, all(probe > d for d in dice.values())))
    return found


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


def noise(runs: pd.DataFrame, methods: list[str], settings: list[str]) -> Noise | None:
    """On how many seeds each method is ahead of ``scratch``, and the smallest two-sided Wilcoxon p."""
    ahead, spreads = [], []
    for arm, setting in itertools.product(methods, settings):
        d = np.array(list(seed_differences(runs_of(runs, arm, setting), runs_of(runs, REFERENCE, setting)).values()))
        if len(d) > 1:
            ahead.append((arm, setting, int((d > 0).sum()), len(d)))
            spreads.append(float(np.std(d, ddof=1)))
    most = max((n for *_, n in ahead), default=0)
    return Noise(ahead, min(spreads), max(spreads), most, 2 / 2**most) if ahead else None


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
        for name, mean in zip(classes, organ_means(found)):
            means.setdefault(name, []).append(mean)
        if matrix := example.get("confusion_matrix"):
            per_case = np.asarray(matrix["counts"]).sum(axis=1) / len(example["test"]["cases"])
            voxels.update(zip(matrix["classes"], per_case))
    upper = runs_of(runs, REFERENCE, UPPER_BOUND_SETTING)
    upper_means = dict(zip(classes, organ_means(upper))) if upper else {}
    return [LowOrgan(name, voxels.get(name, float("nan")), min(means[name]), max(means[name]), upper_means.get(name))
            for name in classes if means.get(name) and max(means[name]) < SMALL_ORGAN_DICE]


def setting_ceilings(outcomes: list[Outcome]) -> list[SettingCeiling]:
    """Per setting, over the method's outcomes against ``scratch``, the highest upper interval end."""
    by_setting: dict[str, float] = {}
    for o in outcomes:
        if is_method(o.test.method) and o.test.baseline == REFERENCE and o.seeds > 1:
            by_setting[o.test.setting] = max(by_setting.get(o.test.setting, -np.inf), o.difference.high)
    return [SettingCeiling(s, h, h < TARGET_GAIN) for s, h in by_setting.items()]


def own_best(endpoint: list[Outcome], at_fractions: list[Outcome]) -> list[OwnBest]:
    """Pairs an outcome of the endpoint with the same test at the whole of ``scratch``'s budget (fraction 1)."""
    whole = {(o.test.method, o.test.setting.rsplit(" @ ", 1)[0]): o for o in at_fractions
             if o.test.setting.endswith(" @ 1")}
    return [OwnBest(o.test.method, o.test.setting, o.difference.mean, w.difference.mean) for o in endpoint
            if o.test.baseline == REFERENCE and (w := whole.get((o.test.method, o.test.setting))) is not None]


def draws(runs: pd.DataFrame) -> Draws | None:
    """The overlap of the seeds' labelled draws and pretraining pools; ``None`` where no run records a draw."""
    tested = runs[runs.stage.isin(("finetune", "atlas")) & ~runs.probe & runs.labelled.notna()
                  & (runs.setting != UPPER_BOUND_SETTING)]
    if tested.empty:
        return None
    sets = {s: dict(zip(g.seed, g.labelled.map(lambda c: tuple(sorted(c))))) for s, g in tested.groupby("setting")}
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
    return Draws(tested.seed.nunique(), {k: len(set().union(*v.values())) for k, v in sets.items()},
                 dict(Counter(str(p) for p in singles.values())), shared, counts, len(pools[0]),
                 (min(overlap), max(overlap)) if overlap else None, bool(tested.reconstructed.any()),
                 any(shared.values()) or max(overlap, default=0) > 0)


def pool_mask_arms(runs: pd.DataFrame) -> list[str]:
    """Pretrained arms whose pretraining reads the label masks of the pretraining pool (class positives or
    supervised segmentation), beside the labelled volumes of their fine-tuning."""
    arms = []
    for arm, found in by_arm(runs, "pretrain").items():
        record = next(iter(found.values()))
        summary, settings = record["summary"], record["config"].get("arm_settings") or {}
        uses_masks = summary.get("positives") == "class" or summary.get("workflow") == "train"
        if uses_masks and not settings.get("pretrain_key"):
            arms.append(arm)
    return arms
