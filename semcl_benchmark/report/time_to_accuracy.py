"""Time to accuracy, a declared endpoint of benchmark v2: how soon fine-tuning from a pretrained encoder gets there.

For each pretrained arm, setting and seed: the fine-tuning steps and seconds until the arm's validation Dice first
reaches the best validation Dice that ``scratch`` reached with the same seed in its whole run (paired by seed; a run
that never reaches it counts as "not reached"). Beside it, ``scratch``'s own steps and seconds to its best. The
Wilcoxon test pairs the arm's steps with ``scratch``'s steps to its best; a seed that never reaches the target counts
as slower than every seed that does (its difference is made larger than any other: the largest rank, against the arm).
The protocol first said "counted at its last validation", which would count such a seed as *faster* when the arm
stopped early below ``scratch``'s best: a deviation recorded in the size's protocol entry. The tests of all arms and
settings planned form one family, Holm-adjusted (:func:`~.endpoints.holm_over_declared`).

Second part, when the result files carry it: the test Dice of each arm at fixed fractions of ``scratch``'s budget (the
epoch of its best validation) (``budget_fractions``, see :mod:`.records`), against ``scratch`` at the same fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..statistics import paired_wilcoxon
from .comparison import format_p
from .endpoints import REFERENCE, Outcome, Test, family_note, holm_over_declared, is_atlas, outcome_table, run_family
from .records import ValidationPoint, budget_fractions, validation_points

__all__ = ["Reach", "budget_fraction_runs", "declared_reaches", "reach", "reach_family", "time_to_accuracy"]


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
    p: float  # Wilcoxon, arm steps (a seed not reaching it ranked slowest) vs scratch's steps to its best
    faster: int = 0  # paired seeds on which the arm reached it in fewer steps than scratch took to its best
    holm_p: float = float("nan")  # over the family of :func:`reach_family`

    @property
    def reached(self) -> int:
        return len(self.steps)


def reach(finetunes, arm: str, setting: str) -> Reach | None:
    """How soon ``arm`` reaches ``scratch``'s best validation Dice in ``setting``, seed by seed (``None``: no pair)."""
    scratch = finetunes.get((REFERENCE, setting, False), {})
    runs = finetunes.get((arm, setting, False), {})
    steps, seconds, ratios, scratch_steps, scratch_seconds, arm_steps = [], [], [], [], [], []
    for seed in sorted(set(runs) & set(scratch)):
        ours, theirs = validation_points(runs[seed]), validation_points(scratch[seed])
        if not any(p.dice is not None for p in ours) or not any(p.dice is not None for p in theirs):
            continue
        target = best(theirs)
        scratch_steps.append(target.step)
        if target.seconds is not None:
            scratch_seconds.append(target.seconds)
        point = first_reaching(ours, target.dice)
        arm_steps.append(None if point is None else point.step)
        if point is not None:
            steps.append(point.step)
            ratios.append(point.step / max(target.step, 1))
            if point.seconds is not None:
                seconds.append(point.seconds)
    if not scratch_steps:
        return None
    # a seed that never reaches the target: slower than any that does (a difference above every other's magnitude)
    reached = [abs(a - b) for a, b in zip(arm_steps, scratch_steps) if a is not None]
    slowest = max(reached, default=0) + 1
    ranked = [b + slowest if a is None else a for a, b in zip(arm_steps, scratch_steps)]
    p = paired_wilcoxon(ranked, scratch_steps) if len(ranked) > 1 else float("nan")
    faster = sum(a < b for a, b in zip(ranked, scratch_steps))
    return Reach(arm, setting, len(scratch_steps), steps, seconds, ratios, scratch_steps, scratch_seconds, p, faster)


def declared_reaches(keys, settings=()) -> list[tuple[str, str]]:
    """``(arm, setting)`` of every pretrained arm's fine-tuning among ``keys`` (``(arm, setting, probe)``) that has a
    ``scratch`` run in the same setting: the time-to-accuracy family; ordered by ``settings``, then by arm."""
    keys = set(keys)
    pairs = {(a, s) for a, s, probe in keys
             if not probe and a != REFERENCE and not is_atlas(a) and (REFERENCE, s, False) in keys}
    order = {s: i for i, s in enumerate(settings)}
    return sorted(pairs, key=lambda pair: (order.get(pair[1], len(order)), pair[1], pair[0]))


def reach_family(finetunes, pairs: list[tuple[str, str]]) -> list[Reach]:
    """:func:`reach` of each declared ``(arm, setting)`` with results, its p Holm-adjusted over all ``pairs``."""
    reaches = [r for arm, setting in pairs if (r := reach(finetunes, arm, setting)) is not None]
    adjusted = holm_over_declared([r.p for r in reaches], len(pairs))
    return [replace(r, holm_p=h) for r, h in zip(reaches, adjusted)]


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


def time_to_accuracy(finetunes, arms, settings, keys=None, planned_seeds: int | None = None) -> list[str]:
    """The time-to-accuracy section: steps and seconds to ``scratch``'s best, and test Dice at budget fractions.

    ``keys``: the planned ``(arm, setting, probe)``, which declare the family (default: ``arms`` x ``settings``);
    ``planned_seeds``: the seeds the protocol plans for each test (for :func:`~.endpoints.holm_floor`)."""
    keys = {(a, s, False) for a in arms for s in settings} if keys is None else keys
    pairs = declared_reaches(keys, settings)
    reaches = reach_family(finetunes, pairs)
    if not reaches:
        return []
    lines = ["## Time to accuracy (declared endpoint; paired by seed)", "",
             "Per seed: the first validation at which the arm's validation Dice reaches the best that `scratch` "
             "reached with that seed in its whole run. Medians over the seeds that reach it; the ratio is the arm's "
             "steps over `scratch`'s steps to its best (below 1: faster). Wilcoxon: the arm's steps (a seed that never "
             "reaches it ranked slower than every seed that does) against `scratch`'s steps to its best; "
             + family_note(reaches, len(pairs), planned_seeds, max(r.paired for r in reaches)), "",
             "| setting | arm | reached | steps (median) | seconds (median) | `scratch` steps to best | "
             "`scratch` seconds to best | step ratio (median) | faster than `scratch` | Wilcoxon p | Holm p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in reaches:
        lines.append(f"| {r.setting} | `{r.arm}` | {r.reached} of {r.paired} (not reached: {r.paired - r.reached}) | "
                     f"{_median(r.steps)} | {_median(r.seconds, ' s')} | {_median(r.scratch_steps)} | "
                     f"{_median(r.scratch_seconds, ' s')} | {f'{np.median(r.ratios):.2f}' if r.ratios else '-'} | "
                     f"{r.faster} of {r.paired} seeds | {format_p(r.p)} | {format_p(r.holm_p)} |")
    lines.append("")
    fractions = budget_fraction_runs(finetunes)
    levels = sorted({float(s.rsplit(" @ ", 1)[1]) for _, s, _ in fractions})
    tests = [Test(arm, REFERENCE, f"{setting} @ {f:g}") for arm, setting in pairs for f in levels]
    outcomes: list[Outcome] = run_family(fractions, tests)
    if outcomes:
        lines += ["Test Dice at fixed fractions of `scratch`'s budget (the epoch of its best validation, same seed and "
                  "setting; `setting @ fraction`), against `scratch` at the same fraction; "
                  + family_note(outcomes, len(tests), planned_seeds), "", *outcome_table(outcomes), ""]
    return lines
