"""Analyse: issue 20's difficulty criteria of a testbed, from the result files of ``scratch`` and the atlases alone.

headroom         ``scratch`` at :data:`MANY` minus at :data:`FEW` volumes, paired by seed: mean >= :data:`HEADROOM`
                 over >= :data:`MIN_SEEDS` seeds
learning needed  ``scratch`` minus the best atlas (highest mean Dice) at :data:`MIDDLE`, paired: >= :data:`LEARNING`
coverage         every organ's test Dice of ``scratch`` at :data:`MANY` >= :data:`ORGAN_DICE`, and every organ present
                 in some test case of every phase bucket
cost             ``scratch``'s fine-tuning cost per run at most :data:`COST_RATIO` x v1's in every setting both ran: a
                 paired measurement of an epoch's cost (``cost_ratio.json``) times the ratio of epochs per run where
                 one was made against v1, else the recorded seconds (runs made on different days and machines)

A criterion holds or fails once every run it needs (each of the size's seeds) has finished; until then it waits,
naming the runs missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..cost_ratio import COST_RATIO_FILE
from ..results import results_folder
from .endpoints import REFERENCE, is_atlas, organ_means, seed_differences
from .load import case_phases, mean_dice, runs_of, table

__all__ = ["Criteria", "criteria", "read_cost_ratio"]

FEW, MIDDLE, MANY = "finetune_1", "finetune_4", "finetune_8"
HEADROOM, MIN_SEEDS, LEARNING, ORGAN_DICE, COST_RATIO = 0.15, 3, 0.15, 0.5, 2.0
V1_RESULTS = results_folder("v1")  # the reference of the cost criterion ("within ~2x of today's")


#: One criterion's numbers (``values``, named as the template prints them), its ``state`` (``holds``, ``fails``,
#: ``waiting``) and the runs it still waits for.
Criterion = NamedTuple("Criterion", [("name", str), ("values", dict), ("state", str), ("missing", list)])
#: ``scratch``'s fine-tuning in a setting: runs, mean seconds, over v1's mean seconds of the setting, paired epoch cost
#: x epochs per run (where measured), (median, min, max) of the best validation epoch, median and mean epochs run, and
#: the CPU share (CPU over wall seconds); ``None`` where not measured.
CostRow = NamedTuple("CostRow", [("setting", str), ("runs", int), ("seconds", float | None),
                                 ("by_seconds", float | None), ("paired", float | None), ("plateau", tuple | None),
                                 ("epochs", float | None), ("epochs_mean", float | None), ("cpu_share", float | None)])
#: The four criteria, the seeds they need, ``scratch``'s test Dice per organ at :data:`MANY`, v1's mean seconds and
#: runs per setting, and the cost table's rows.
Criteria = NamedTuple("Criteria", [("criteria", list), ("seeds", list), ("organs", dict), ("v1_seconds", dict),
                                   ("costs", list)])


def _missing(runs, arm: str, setting: str, seeds) -> list[str]:
    found = runs_of(runs, arm, setting)
    return [f"`{arm}` {setting} seed {s}" for s in seeds if s not in found]


def _mean(found: dict[int, dict]) -> float:
    """The mean over seeds of each run's mean test Dice."""
    return float(np.mean([mean_dice(record) for record in found.values()]))


def _state(missing: list[str], holds: bool) -> str:
    return "waiting" if missing else "holds" if holds else "fails"


def headroom(runs: pd.DataFrame, seeds) -> Criterion:
    per_seed = seed_differences(runs_of(runs, REFERENCE, MANY), runs_of(runs, REFERENCE, FEW))
    mean = float(np.mean(list(per_seed.values()))) if per_seed else None
    missing = _missing(runs, REFERENCE, MANY, seeds) + _missing(runs, REFERENCE, FEW, seeds)
    holds = mean is not None and len(per_seed) >= MIN_SEEDS and mean >= HEADROOM
    return Criterion("headroom", {"mean": mean, "per_seed": per_seed}, _state(missing, holds), missing)


def learning_needed(runs: pd.DataFrame, atlases, seeds) -> Criterion:
    means = {a: _mean(found) for a in atlases if (found := runs_of(runs, a, MIDDLE))}
    missing = [m for arm in [REFERENCE, *atlases] for m in _missing(runs, arm, MIDDLE, seeds)]
    scratch = runs_of(runs, REFERENCE, MIDDLE)
    if not means or not scratch:
        return Criterion("learning", {"mean": None, "atlases": means}, "waiting", missing)
    best = max(means, key=means.get)
    per_seed = seed_differences(scratch, runs_of(runs, best, MIDDLE))
    mean = float(np.mean(list(per_seed.values()))) if per_seed else None
    values = {"mean": mean, "scratch": _mean(scratch), "atlases": means, "best": best, "per_seed": per_seed}
    return Criterion("learning", values, _state(missing, mean is not None and mean >= LEARNING), missing)


def coverage(runs: pd.DataFrame, seeds) -> tuple[Criterion, dict[str, float]]:
    tested = runs[runs.stage.isin(("finetune", "atlas"))]
    example = next((r for r in tested.record if case_phases(r)), None)
    buckets, gaps = None, []
    if example is not None:
        phases, test = [str(p) for p in case_phases(example)], example["test"]
        buckets = {p: phases.count(p) for p in sorted(set(phases))}
        gaps = [f"{organ} in {b}" for b in buckets for i, organ in enumerate(test["classes"])
                if not any(row[i] is not None for row, p in zip(test["dice"], phases) if p == b)]
    found = runs_of(runs, REFERENCE, MANY)
    organs = dict(zip(next(iter(found.values()))["test"]["classes"], organ_means(found))) if found else {}
    below = {o: d for o, d in organs.items() if not d >= ORGAN_DICE}
    missing = _missing(runs, REFERENCE, MANY, seeds)
    state = "fails" if gaps or (below and not missing) else "waiting" if missing or buckets is None else "holds"
    values = {"lowest": min(organs.items(), key=lambda x: x[1]) if organs else None, "below": below,
              "seeds": len(found), "buckets": buckets, "gaps": gaps}
    return Criterion("coverage", values, state, missing), organs


def read_cost_ratio(folder: Path) -> dict | None:
    """The size's paired measurement of an epoch's cost against v1's (``cost_ratio.json``), if any."""
    path = folder / COST_RATIO_FILE
    paired = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return paired if paired and paired.get("reference") == "v1" else None


def _cost_row(setting, found, v1: dict, v1_epochs: dict, paired) -> CostRow:
    if not found:
        return CostRow(setting, 0, *[None] * 7)
    train = [r["cost"]["train"] for r in found]
    seconds, plateau = float(np.mean([c["seconds"] for c in train])), [r["best_metric_epoch"] for r in found]
    epochs = float(np.mean([r["epochs"] for r in found]))
    share = (sum(c["cpu_seconds"] for c in train) / sum(c["seconds"] for c in train)
             if all("cpu_seconds" in c for c in train) and sum(c["seconds"] for c in train) else None)
    measured = paired and paired.get("setting") == setting and v1_epochs.get(setting) and setting in v1
    return CostRow(setting, len(found), seconds, seconds / v1[setting][0] if setting in v1 else None,
                   paired["ratio_median"] * epochs / v1_epochs[setting] if measured else None,
                   (float(np.median(plateau)), min(plateau), max(plateau)),
                   float(np.median([r["epochs"] for r in found])), epochs, share)


def cost(runs: pd.DataFrame, settings, seeds, paired, reference: Path = V1_RESULTS):
    """The cost criterion, v1's seconds per setting, and the cost table's rows."""
    v1_runs = table({p.stem: json.loads(p.read_text(encoding="utf-8"))
                     for p in sorted(reference.glob(f"finetune__{REFERENCE}__*.json"))})
    by_setting = {s: g.record.tolist() for s, g in v1_runs[~v1_runs.probe].groupby("setting")}
    v1 = {s: (float(np.mean([r["cost"]["train"]["seconds"] for r in rs])), len(rs)) for s, rs in by_setting.items()}
    v1_epochs = {s: float(np.mean([r["epochs"] for r in rs])) for s, rs in by_setting.items()}
    rows = [_cost_row(s, list(runs_of(runs, REFERENCE, s).values()), v1, v1_epochs, paired) for s in settings]
    ratios = {r.setting: r for r in rows if r.by_seconds is not None}
    missing = [m for s in settings if s in v1 for m in _missing(runs, REFERENCE, s, seeds)]
    values = {"ratios": ratios, "paired": paired, "v1_epochs": v1_epochs, "v1": v1}
    held = bool(ratios) and all((r.paired or r.by_seconds) <= COST_RATIO for r in ratios.values())
    return Criterion("cost", values, _state(missing, held) if ratios else "waiting", missing), v1, rows


def criteria(runs: pd.DataFrame, size, paired: dict | None) -> Criteria:
    """The four criteria of ``size`` (its seeds, settings and atlas arms are the runs each needs)."""
    seeds = list(size.seeds)
    cover, organs = coverage(runs, seeds)
    spend, v1, rows = cost(runs, list(size.settings), seeds, paired)
    found = [headroom(runs, seeds), learning_needed(runs, [a for a in size.arms if is_atlas(a)], seeds), cover, spend]
    return Criteria(found, seeds, organs, v1, rows)
