"""Time to accuracy, a declared endpoint of benchmark v2: how soon fine-tuning from a pretrained encoder gets there.

For each pretrained arm, setting and seed: the fine-tuning steps and seconds until the arm's validation Dice first
reaches the best validation Dice that ``scratch`` reached with the same seed in its whole run (paired by seed; a run
that never reaches it counts as "not reached"). Beside it, ``scratch``'s own steps and seconds to its best. The
Wilcoxon test pairs the arm's steps with ``scratch``'s steps to its best; a run that never reaches the target enters
with the steps of its last validation, which is fewer than it would need (so the test leans against the arm).

Second part, when the result files carry it: the test Dice of each arm at fixed fractions of ``scratch``'s budget (the
epoch of its best validation) (``budget_fractions``, see :mod:`.records`), against ``scratch`` at the same fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..statistics import paired_wilcoxon
from .comparison import format_p
from .endpoints import REFERENCE, Outcome, Test, is_atlas, outcome_table, run_family
from .records import ValidationPoint, budget_fractions, validation_points

__all__ = ["Reach", "budget_fraction_runs", "reach", "time_to_accuracy"]


def first_reaching(points: list[ValidationPoint], target: float) -> ValidationPoint | None:
    """The first validation whose Dice is at least ``target``; ``None`` if none is."""
    return next((p for p in points if p.dice is not None and p.dice >= target), None)


def best(points: list[ValidationPoint]) -> ValidationPoint:
    """The validation with the highest Dice (the first of equals)."""
    return max((p for p in points if p.dice is not None), key=lambda p: p.dice)


@dataclass(frozen=True)
class Reach:
    """One arm in one setting against ``scratch``, paired by seed."""

    arm: str
    setting: str
    paired: int  # seeds where both runs have validation curves
    steps: list[int]  # per reaching seed, the arm's steps to scratch's best
    seconds: list[float]  # the same seeds, where seconds are recorded
    ratios: list[float]  # per reaching seed, arm steps / scratch's steps to its best
    scratch_steps: list[int]  # per paired seed, scratch's steps to its best
    scratch_seconds: list[float]
    p: float  # Wilcoxon, arm steps (censored at the last validation) vs scratch's steps to its best

    @property
    def reached(self) -> int:
        return len(self.steps)


def reach(finetunes, arm: str, setting: str) -> Reach | None:
    """How soon ``arm`` reaches ``scratch``'s best validation Dice in ``setting``, seed by seed (``None``: no pair)."""
    scratch = finetunes.get((REFERENCE, setting, False), {})
    runs = finetunes.get((arm, setting, False), {})
    steps, seconds, ratios, scratch_steps, scratch_seconds, censored = [], [], [], [], [], []
    for seed in sorted(set(runs) & set(scratch)):
        ours, theirs = validation_points(runs[seed]), validation_points(scratch[seed])
        if not any(p.dice is not None for p in ours) or not any(p.dice is not None for p in theirs):
            continue
        target = best(theirs)
        scratch_steps.append(target.step)
        if target.seconds is not None:
            scratch_seconds.append(target.seconds)
        point = first_reaching(ours, target.dice)
        censored.append((point or ours[-1]).step)
        if point is not None:
            steps.append(point.step)
            ratios.append(point.step / max(target.step, 1))
            if point.seconds is not None:
                seconds.append(point.seconds)
    if not scratch_steps:
        return None
    p = paired_wilcoxon(censored, scratch_steps) if len(censored) > 1 else float("nan")
    return Reach(arm, setting, len(scratch_steps), steps, seconds, ratios, scratch_steps, scratch_seconds, p)


def _median(values: list[float], unit: str = "") -> str:
    return f"{np.median(values):.0f}{unit}" if values else "-"


def budget_fraction_runs(finetunes) -> dict[tuple[str, str, bool], dict[int, dict]]:
    """Runs at each fraction of the budget as runs of their own: ``{(arm, "<setting> @ <f>", False): {seed: run}}``."""
    runs: dict[tuple[str, str, bool], dict[int, dict]] = {}
    for (arm, setting, probe), by_seed in finetunes.items():
        for seed, result in by_seed.items():
            for fraction, test in budget_fractions(result).items():
                if not probe:
                    runs.setdefault((arm, f"{setting} @ {fraction:g}", False), {})[seed] = {**result, "test": test}
    return runs


def time_to_accuracy(finetunes, arms, settings) -> list[str]:
    """The time-to-accuracy section: steps and seconds to ``scratch``'s best, and test Dice at budget fractions."""
    pretrained = [a for a in arms if a != REFERENCE and not is_atlas(a)]
    reaches = [r for s in settings for a in pretrained if (r := reach(finetunes, a, s)) is not None]
    if not reaches:
        return []
    lines = ["## Time to accuracy (declared endpoint; paired by seed)", "",
             "Per seed: the first validation at which the arm's validation Dice reaches the best that `scratch` "
             "reached with that seed in its whole run. Medians over the seeds that reach it; the ratio is the arm's "
             "steps over `scratch`'s steps to its best (below 1: faster). Wilcoxon: the arm's steps (a seed that never "
             "reaches it counted at its last validation) against `scratch`'s steps to its best.", "",
             "| setting | arm | reached | steps (median) | seconds (median) | `scratch` steps to best | "
             "`scratch` seconds to best | step ratio (median) | Wilcoxon p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in reaches:
        lines.append(f"| {r.setting} | `{r.arm}` | {r.reached} of {r.paired} (not reached: {r.paired - r.reached}) | "
                     f"{_median(r.steps)} | {_median(r.seconds, ' s')} | {_median(r.scratch_steps)} | "
                     f"{_median(r.scratch_seconds, ' s')} | {f'{np.median(r.ratios):.2f}' if r.ratios else '-'} | "
                     f"{format_p(r.p)} |")
    lines.append("")
    fractions = budget_fraction_runs(finetunes)
    tests = [Test(arm, REFERENCE, setting) for (arm, setting, _) in sorted(fractions) if arm in pretrained]
    outcomes: list[Outcome] = run_family(fractions, tests)
    if outcomes:
        lines += ["Test Dice at fixed fractions of `scratch`'s budget (the epoch of its best validation, same seed and "
                  "setting; `setting @ fraction`), against "
                  f"`scratch` at the same fraction; Holm over the {len(outcomes)} tests of this table.", "",
                  *outcome_table(outcomes), ""]
    return lines
