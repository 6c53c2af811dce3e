"""Analyse: time to accuracy, a declared endpoint of benchmark v2, and test Dice at fractions of ``scratch``'s budget.

Per pretrained arm, setting and seed: the fine-tuning steps and seconds until the arm's validation Dice first reaches
the best that ``scratch`` reached with the same seed in its whole run. The Wilcoxon test pairs the arm's steps with
``scratch``'s steps to its best; a seed that never reaches the target ranks slower than every seed that does (a
deviation from the protocol's first wording, recorded in the size's protocol entry). All arms and settings planned
form one family. Second part: each arm's test Dice at fixed fractions of ``scratch``'s best epoch
(``budget_fractions``) against ``scratch`` at the same fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..statistics import paired_wilcoxon
from .endpoints import REFERENCE, Family, Test, family, holm_floor, holm_over_declared, is_atlas
from .load import budget_fractions, runs_of, table, validation_points

__all__ = ["Reach", "budget_fraction_family", "declared_reaches", "reach", "reach_family"]


@dataclass(frozen=True)
class Reach:
    """One arm in one setting against ``scratch``, paired by seed; medians ``None`` where no seed reached it."""

    arm: str
    setting: str
    paired: int  # seeds where both runs have validation curves
    reached: int
    steps: float | None  # median over reaching seeds of the arm's steps to scratch's best
    seconds: float | None
    ratio: float | None  # median of arm steps / scratch's steps to its best
    scratch_steps: float
    scratch_seconds: float | None
    faster: int  # paired seeds on which the arm reached it in fewer steps than scratch took to its best
    p: float
    holm_p: float = float("nan")


def _median(values: list) -> float | None:
    return float(np.median(values)) if values else None


def reach(runs: pd.DataFrame, arm: str, setting: str) -> Reach | None:
    """How soon ``arm`` reaches ``scratch``'s best validation Dice in ``setting``, seed by seed (``None``: no pair)."""
    scratch, ours = runs_of(runs, REFERENCE, setting), runs_of(runs, arm, setting)
    pairs = []  # (arm's first reaching point or None, scratch's best point)
    for seed in sorted(set(ours) & set(scratch)):
        mine = [p for p in validation_points(ours[seed]) if p.dice is not None]
        theirs = [p for p in validation_points(scratch[seed]) if p.dice is not None]
        if mine and theirs:
            target = max(theirs, key=lambda p: p.dice)
            pairs.append((next((p for p in mine if p.dice >= target.dice), None), target))
    if not pairs:
        return None
    hit = [(a, b) for a, b in pairs if a is not None]
    slowest = max((abs(a.step - b.step) for a, b in hit), default=0) + 1
    ranked = [b.step + slowest if a is None else a.step for a, b in pairs]
    targets = [b.step for _, b in pairs]
    p = paired_wilcoxon(ranked, targets) if len(pairs) > 1 else float("nan")
    seconds = [a.seconds for a, _ in hit if a.seconds is not None]
    scratch_seconds = [b.seconds for _, b in pairs if b.seconds is not None]
    return Reach(arm, setting, len(pairs), len(hit), _median([a.step for a, _ in hit]), _median(seconds),
                 _median([a.step / max(b.step, 1) for a, b in hit]), float(np.median(targets)),
                 _median(scratch_seconds), sum(r < t for r, t in zip(ranked, targets)), p)


def declared_reaches(keys, settings=()) -> list[tuple[str, str]]:
    """``(arm, setting)`` of every pretrained arm's planned fine-tuning with a ``scratch`` run in its setting."""
    pairs = {(a, s) for a, s, probe in keys
             if not probe and a != REFERENCE and not is_atlas(a) and (REFERENCE, s, False) in keys}
    order = {s: i for i, s in enumerate(settings)}
    return sorted(pairs, key=lambda pair: (order.get(pair[1], len(order)), pair[1], pair[0]))


def reach_family(runs: pd.DataFrame, pairs: list[tuple[str, str]]) -> list[Reach]:
    """:func:`reach` of each declared ``(arm, setting)`` with results, Holm-adjusted over all ``pairs``."""
    reaches = [r for arm, setting in pairs if (r := reach(runs, arm, setting)) is not None]
    adjusted = holm_over_declared([r.p for r in reaches], len(pairs))
    return [Reach(**{**r.__dict__, "holm_p": h}) for r, h in zip(reaches, adjusted)]


def reach_floor(reaches: list[Reach], declared: int, planned_seeds: int | None):
    """:func:`~.endpoints.holm_floor` of the time-to-accuracy family (its most paired seeds)."""
    return holm_floor(max(r.paired for r in reaches), declared, planned_seeds) if reaches else None


def budget_fraction_family(runs: pd.DataFrame, pairs: list[tuple[str, str]], planned_seeds: int | None) -> Family:
    """Each declared ``(arm, setting)`` against ``scratch`` at every recorded fraction of ``scratch``'s budget."""
    records = {}
    for row in runs[runs.stage == "finetune"].itertuples():
        for fraction, test in budget_fractions(row.record).items():
            if not row.probe:
                setting = f"{row.setting} @ {fraction:g}"
                config = {**row.record["config"], "setting": setting}
                records[f"{row.key}@{fraction:g}"] = {**row.record, "test": test, "config": config}
    fractions = table(records)
    levels = sorted({float(s.rsplit(" @ ", 1)[1]) for s in fractions.setting}) if len(fractions) else []
    tests = [Test(arm, REFERENCE, f"{setting} @ {f:g}") for arm, setting in pairs for f in levels]
    return family(fractions, tests, planned_seeds)
