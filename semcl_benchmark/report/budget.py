"""Analyse: whether every arm was trained to its best, and what the epoch checks do not cover.

A run *ends at its cap while still improving* when it used all its epochs (its last cap, after any budget extension)
and its best validation came after the start of the last patience window. A contrastive pretraining *collapsed* as its
result file says; it is *near collapse* when its negative cosine is at least :data:`NEAR_COLLAPSE_NEGATIVE_COSINE` or
its embeddings span fewer than :data:`NEAR_COLLAPSE_RANK` effective dimensions. Beyond epochs: a pretraining's
optimiser steps and whether its loss was still falling (least-squares slope over its last :data:`FALLING_EPOCHS`
epochs below 0), and the frozen probe of an arm against its full fine-tuning, seed by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .load import epoch_caps, runs_of

__all__ = ["ArmBudget", "CapRow", "Caps", "CollapseRow", "ProbeAgainstFull", "caps", "collapse_rows",
           "pretraining_budgets", "probe_against_full", "validating_rows"]

NEAR_COLLAPSE_NEGATIVE_COSINE = 0.5
NEAR_COLLAPSE_RANK = 4.0
FALLING_EPOCHS = 10


@dataclass(frozen=True)
class CapRow:
    setting: str
    arm: str
    probe: bool
    runs: int
    capped: int
    improving: int
    best_at_last: int


@dataclass(frozen=True)
class Caps:
    """Fine-tuning (and validating pretraining) runs at their cap; ``extended``/``improving`` name the runs."""

    total: int  # fine-tuning runs (atlases have no budget)
    capped: int
    improving: int
    rows: list[CapRow]
    extended: list[tuple]  # runs whose budget was doubled: (arm, setting, probe, seed, caps, best epoch, epochs)
    improving_runs: list[tuple]  # (arm, setting, probe, seed)


def _budget(record: dict, pretraining: bool) -> tuple[int, int, int, int] | None:
    """``(epochs, cap, best epoch, patience window)`` of a run that validates; ``None`` otherwise."""
    config = record["config"]
    if pretraining:
        summary = record["summary"]
        if summary.get("best_metric_epoch") is None:
            return None
        settings = {**(config.get("pretrain") or {}), **(config.get("arm_settings") or {})}
        epochs, best, cap = summary.get("epochs_completed"), summary["best_metric_epoch"], summary.get("max_epochs")
    else:
        settings = config.get("finetune") or {}
        epochs, best, cap = record.get("epochs"), record.get("best_metric_epoch"), settings.get("max_epochs")
    patience = settings.get("early_stop_patience")
    window = patience * settings.get("val_interval", 1) if patience else 0
    cap = (epoch_caps(record) or [cap or settings.get("max_epochs")])[-1]
    return None if epochs is None or cap is None else (epochs, cap, best, window)


def _flags(budget) -> tuple[bool, bool, bool]:
    """(at its cap, still improving there, best at the last epoch) of :func:`_budget`."""
    epochs, cap, best, window = budget
    capped = epochs >= cap
    if not capped or best is None:
        return capped, False, False
    return capped, best > epochs - window if window else best >= epochs, best >= epochs


def caps(runs: pd.DataFrame) -> Caps:
    """Runs at their cap, still improving, with their budget doubled; by setting and arm (pretraining last)."""
    rows, extended, improving_runs, total, capped_all, improving_all = [], [], [], 0, 0, 0
    groups = runs[runs.stage.isin(("finetune", "pretrain"))].copy()
    groups["where"] = groups.setting.fillna("pretraining")
    for (where, arm, probe), group in groups.groupby(["where", "arm", "probe"], sort=True):
        budgets = {s: b for s, r in zip(group.seed, group.record) if (b := _budget(r, where == "pretraining"))}
        flags = {s: _flags(b) for s, b in sorted(budgets.items())}
        extended += [(arm, where, probe, s, epoch_caps(r), budgets[s][2], budgets[s][0])
                     for s, r in sorted(zip(group.seed, group.record)) if len(epoch_caps(r)) > 1 and s in budgets]
        improving_runs += [(arm, where, probe, s) for s, f in flags.items() if f[1]]
        capped = sum(f[0] for f in flags.values())
        if where != "pretraining":
            total += len(flags)
            capped_all += capped
            improving_all += sum(f[1] for f in flags.values())
        if capped:
            rows.append(CapRow(where, arm, bool(probe), len(flags), capped, sum(f[1] for f in flags.values()),
                               sum(f[2] for f in flags.values())))
    return Caps(total, capped_all, improving_all, rows, extended, improving_runs)


@dataclass(frozen=True)
class CollapseRow:
    """A contrastive arm's collapse monitors per seed (effective rank, negative cosine) and its counts."""

    arm: str
    monitors: dict[int, tuple[float, float | None]]
    collapsed: int
    near: int
    rule: dict


def collapse_rows(runs: pd.DataFrame) -> list[CollapseRow]:
    """Every pretraining arm whose runs record their collapse monitors."""
    rows = []
    for arm in dict.fromkeys(runs[runs.stage == "pretrain"].arm):
        records = {s: r["collapse"] for s, r in sorted(runs_of(runs, arm, stage="pretrain").items()) if r.get("collapse")}
        if not records:
            continue
        near = [not r["collapsed"] and ((r.get("negative_cosine") is not None and r["negative_cosine"] >=
                NEAR_COLLAPSE_NEGATIVE_COSINE) or r["effective_rank"] < NEAR_COLLAPSE_RANK) for r in records.values()]
        rows.append(CollapseRow(arm, {s: (r["effective_rank"], r.get("negative_cosine")) for s, r in records.items()},
                                sum(r["collapsed"] for r in records.values()), sum(near),
                                next(iter(records.values())).get("rule") or {}))
    return rows


def validating_rows(runs: pd.DataFrame) -> list[tuple[str, int, float, float, float, int]]:
    """Pretraining that validates: ``(arm, best at the last epoch, median best epoch, median epochs, mean best Dice,
    seeds)``."""
    rows = []
    for arm in dict.fromkeys(runs[runs.stage == "pretrain"].arm):
        summaries = [r["summary"] for r in runs_of(runs, arm, stage="pretrain").values()
                     if r["summary"].get("best_metric_epoch") is not None]
        if summaries:
            rows.append((arm, sum(s["best_metric_epoch"] >= s["epochs_completed"] for s in summaries),
                         float(np.median([s["best_metric_epoch"] for s in summaries])),
                         float(np.median([s["epochs_completed"] for s in summaries])),
                         float(np.mean([s["best_metric"] for s in summaries])), len(summaries)))
    return rows


@dataclass(frozen=True)
class ArmBudget:
    """A contrastive pretraining's optimiser steps (median over seeds) and the seeds whose loss was still falling."""

    arm: str
    steps: int
    falling: int
    seeds: int


def pretraining_budgets(runs: pd.DataFrame) -> list[ArmBudget]:
    """Optimiser steps and a still-falling loss of every pretraining arm that records its loss per epoch."""
    budgets = []
    for arm in dict.fromkeys(runs[runs.stage == "pretrain"].arm):
        histories = [r.get("history") or [] for r in runs_of(runs, arm, stage="pretrain").values()]
        losses = [[h["mean_loss"] for h in history] for history in histories
                  if len(history) >= FALLING_EPOCHS and all(h.get("mean_loss") is not None for h in history)]
        if len(losses) == len(histories) and losses and all(h[-1].get("iteration") for h in histories):
            slopes = [np.polyfit(np.arange(FALLING_EPOCHS), loss[-FALLING_EPOCHS:], 1)[0] for loss in losses]
            steps = int(np.median([h[-1]["iteration"] for h in histories]))
            budgets.append(ArmBudget(arm, steps, sum(s < 0 for s in slopes), len(losses)))
    return budgets


@dataclass(frozen=True)
class ProbeAgainstFull:
    """An arm's frozen-encoder probe (mean test Dice over its seeds) against its full fine-tuning on the same seeds."""

    arm: str
    setting: str
    probe: float
    full: dict[int, float]

    @property
    def probe_above_every_full_run(self) -> bool:
        return all(self.probe > full for full in self.full.values())


def probe_against_full(runs: pd.DataFrame, setting: str | None) -> list[ProbeAgainstFull]:
    """Every pretrained arm with probe runs: the probes' mean test Dice and the full fine-tuning of the same seeds."""
    found = []
    probes = runs[runs.probe & (runs.setting == setting) & (runs.arm != "scratch")]
    for arm, group in probes.groupby("arm", sort=False):
        full = runs[~runs.probe & (runs.arm == arm) & (runs.setting == setting) & runs.seed.isin(group.seed)]
        if len(full):
            found.append(ProbeAgainstFull(arm, setting, float(group.mean_dice.mean()),
                                          dict(zip(full.seed.astype(int), full.mean_dice.astype(float)))))
    return found
