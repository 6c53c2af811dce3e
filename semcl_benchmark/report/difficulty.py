"""Issue 20's difficulty criteria of a testbed, computed from the result files of ``scratch`` and the atlases alone.

A testbed can show what pretraining adds only if labels still help (headroom), if the labelled volumes do not already
hold the answer (learning needed), if the test set covers the variation (coverage), and if a run costs what the machine
allows (cost). Each criterion is measured on random initialisation and atlases only, never on a pretrained arm
(``docs/PHANTOMS.md``); a size asks for this section with ``difficulty_criteria: true`` (``--size difficulty``):

headroom         ``scratch`` at :data:`MANY` minus at :data:`FEW` labelled volumes, paired by seed:
                 mean >= :data:`HEADROOM_TARGET` over >= :data:`MIN_SEEDS` seeds
learning needed  ``scratch`` minus the best atlas (highest mean test Dice) at :data:`MIDDLE`, paired by seed:
                 >= :data:`LEARNING_TARGET`
coverage         every organ's test Dice of ``scratch`` at :data:`MANY` (mean over seeds and cases) >=
                 :data:`ORGAN_DICE_TARGET`, and every organ present (a test Dice recorded, not ``null``) in some test
                 case of every phase bucket of the test set
cost             ``scratch``'s fine-tuning cost per run over v1's ``scratch`` runs' (:data:`V1_RESULTS`) of the same
                 labelled setting: at most :data:`COST_RATIO_TARGET` times in every setting both have (v1 ran 1 and 2
                 volumes). Where the size's results folder holds a paired measurement (``cost_ratio.json``,
                 :mod:`semcl_benchmark.cost_ratio`: an epoch's seconds against v1's, the two timed in turn on one
                 machine) of that setting, the ratio is that measurement times the ratio of the mean epochs a run
                 lasted (from the result files, which no machine changes); else it is the ratio of the recorded
                 seconds (``cost.train.seconds``), which compares runs made on different days and machines. With every
                 setting's seconds and epochs to the plateau (the epoch of the best validation Dice)

A criterion holds or fails only when every run it needs (each of the size's seeds) has finished; until then it is "not
measured yet", with the runs missing named and the value so far shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cost_ratio import COST_RATIO_FILE
from ..results import results_folder
from .comparison import dice_grid, mean_dice
from .endpoints import REFERENCE, is_atlas
from .records import case_phases

__all__ = [
    "COST_RATIO_TARGET",
    "Criterion",
    "HEADROOM_TARGET",
    "LEARNING_TARGET",
    "ORGAN_DICE_TARGET",
    "V1_RESULTS",
    "coverage",
    "cpu_share",
    "difficulty_criteria",
    "fine_tuning_cost",
    "headroom",
    "learning_needed",
    "read_cost_ratio",
    "reference_epochs",
    "reference_seconds",
]

FEW, MIDDLE, MANY = "finetune_1", "finetune_4", "finetune_8"
"""The labelled settings the criteria compare (1, 4 and 8 labelled volumes drawn per seed)."""
HEADROOM_TARGET = 0.15
MIN_SEEDS = 3
LEARNING_TARGET = 0.15
ORGAN_DICE_TARGET = 0.5
COST_RATIO_TARGET = 2.0
V1_RESULTS = results_folder("v1")
"""v1's committed result files: the reference of the cost criterion ("within ~2x of today's")."""

HOLDS, FAILS = "holds", "fails"


@dataclass(frozen=True)
class Criterion:
    """One criterion: what was measured, the target, and ``holds``, ``fails`` or ``not measured yet (...)``."""

    name: str
    measured: str
    target: str
    state: str


def _missing(finetunes, arm: str, setting: str, seeds: Sequence[int]) -> list[str]:
    """The runs of ``arm`` in ``setting`` that have not finished, of the seeds ``seeds``."""
    runs = finetunes.get((arm, setting, False), {})
    return [f"`{arm}` {setting} seed {s}" for s in seeds if s not in runs]


def _not_measured(missing: list[str]) -> str:
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return f"not measured yet ({len(missing)} runs missing: {shown})"


def _paired(finetunes, arm: str, baseline: str, setting_a: str, setting_b: str) -> dict[int, float]:
    """Mean test Dice of ``arm`` in ``setting_a`` minus ``baseline`` in ``setting_b``, per seed both have."""
    a, b = finetunes.get((arm, setting_a, False), {}), finetunes.get((baseline, setting_b, False), {})
    return {s: mean_dice(a[s]) - mean_dice(b[s]) for s in sorted(set(a) & set(b))}


def _per_seed(differences: dict[int, float]) -> str:
    return ", ".join(f"seed {s} {d:+.3f}" for s, d in differences.items())


def headroom(finetunes, seeds: Sequence[int]) -> Criterion:
    """``scratch`` at :data:`MANY` minus at :data:`FEW`, paired by seed: mean and per seed."""
    target = f"mean >= +{HEADROOM_TARGET:.2f} over >= {MIN_SEEDS} seeds"
    differences = _paired(finetunes, REFERENCE, REFERENCE, MANY, FEW)
    measured = (f"{np.mean(list(differences.values())):+.3f} mean over {len(differences)} seeds "
                f"({_per_seed(differences)})" if differences else "-")
    missing = _missing(finetunes, REFERENCE, MANY, seeds) + _missing(finetunes, REFERENCE, FEW, seeds)
    if missing:
        state = _not_measured(missing)
    else:
        holds = len(differences) >= MIN_SEEDS and np.mean(list(differences.values())) >= HEADROOM_TARGET
        state = HOLDS if holds else FAILS
    return Criterion(f"Headroom (`{REFERENCE}` {MANY} minus {FEW})", measured, target, state)


def learning_needed(finetunes, atlases: Sequence[str], seeds: Sequence[int]) -> Criterion:
    """``scratch`` minus the best of ``atlases`` (highest mean test Dice over seeds) at :data:`MIDDLE`, by seed."""
    target = f"`{REFERENCE}` minus the best atlas >= +{LEARNING_TARGET:.2f}"
    means = {a: float(np.mean([mean_dice(r) for r in runs.values()])) for a in atlases
             if (runs := finetunes.get((a, MIDDLE, False)))}
    missing = [m for arm in [REFERENCE, *atlases] for m in _missing(finetunes, arm, MIDDLE, seeds)]
    if not means or not finetunes.get((REFERENCE, MIDDLE, False)):
        return Criterion(f"Learning needed ({MIDDLE}, best atlas)", "-", target, _not_measured(missing))
    best = max(means, key=means.get)
    differences = _paired(finetunes, REFERENCE, best, MIDDLE, MIDDLE)
    scratch = np.mean([mean_dice(r) for r in finetunes[REFERENCE, MIDDLE, False].values()])
    atlas_means = ", ".join(f"`{a}` {m:.3f}" for a, m in means.items())
    measured = (f"{np.mean(list(differences.values())):+.3f} (`{REFERENCE}` {scratch:.3f}; atlases {atlas_means}; "
                f"best `{best}`; {_per_seed(differences)})" if differences else
                f"no seed pairs `{REFERENCE}` and `{best}` yet (atlases {atlas_means})")
    if missing:
        state = _not_measured(missing)
    else:
        state = HOLDS if np.mean(list(differences.values())) >= LEARNING_TARGET else FAILS
    return Criterion(f"Learning needed ({MIDDLE}, best atlas)", measured, target, state)


def _presence_gaps(finetunes) -> tuple[dict[str, int], list[str]] | None:
    """The test cases per phase bucket, and each ``organ in bucket`` that no test case of that bucket holds; ``None``
    when no result records the test cases' phases. The test set is fixed: any run's test layout tells."""
    example = next((r for runs in finetunes.values() for r in runs.values() if case_phases(r)), None)
    if example is None:
        return None
    phases, test = case_phases(example), example["test"]
    buckets = {p: phases.count(p) for p in sorted({str(p) for p in phases})}
    gaps = [f"{organ} in {bucket}" for bucket in buckets for i, organ in enumerate(test["classes"])
            if not any(row[i] is not None for row, p in zip(test["dice"], phases) if str(p) == bucket)]
    return buckets, gaps


def coverage(finetunes, seeds: Sequence[int]) -> tuple[Criterion, list[str]]:
    """Every organ's test Dice of ``scratch`` at :data:`MANY`, and every organ in every phase bucket of the test set;
    the criterion and the per-organ table."""
    target = f"every organ >= {ORGAN_DICE_TARGET} Dice (`{REFERENCE}`, {MANY}); every organ in every phase bucket"
    presence = _presence_gaps(finetunes)
    parts, absent, below = [], False, []
    if presence is None:
        parts.append("phases of the test cases not recorded")
    else:
        buckets, gaps = presence
        cases = ", ".join(f"{b} {n}" for b, n in buckets.items())
        found = f"absent: {', '.join(gaps)}" if gaps else "every organ in every phase"
        parts.append(f"test cases per phase: {cases}; {found}")
        absent = bool(gaps)  # the test set is fixed: decided by any one run
    runs = finetunes.get((REFERENCE, MANY, False), {})
    table: list[str] = []
    if runs:
        organs = next(iter(runs.values()))["test"]["classes"]
        dice = {o: float(np.nanmean(dice_grid(runs, sorted(runs), i))) for i, o in enumerate(organs)}
        below = [f"{o} {d:.3f}" for o, d in dice.items() if not d >= ORGAN_DICE_TARGET]
        parts.insert(0, f"lowest organ {min(dice, key=dice.get)} {min(dice.values()):.3f}; below "
                        f"{ORGAN_DICE_TARGET}: {', '.join(below) or 'none'} ({len(runs)} seeds)")
        table = [f"Per-organ test Dice of `{REFERENCE}`, {MANY} (mean over seeds and test cases):", "",
                 "| " + " | ".join(organs) + " |", "|" + " --- |" * len(organs),
                 "| " + " | ".join(f"{dice[o]:.3f}" for o in organs) + " |", ""]
    missing = _missing(finetunes, REFERENCE, MANY, seeds)
    if absent or (below and not missing):
        state = FAILS
    elif missing:
        state = _not_measured(missing)
    elif presence is None:
        state = "not measured yet (no result records its test cases' `contrast_phases`)"
    else:
        state = HOLDS
    return Criterion(f"Coverage (`{REFERENCE}` {MANY}; test set)", "; ".join(parts), target, state), table


def _train_seconds(runs) -> list[float]:
    return [r["cost"]["train"]["seconds"] for r in runs]


def cpu_share(runs) -> str:
    """CPU seconds over wall seconds of the runs' training (``cost.train``), or ``-`` if a run did not record them."""
    costs = [r["cost"]["train"] for r in runs]
    if any("cpu_seconds" not in c for c in costs) or not sum(c["seconds"] for c in costs):
        return "-"
    return f"{sum(c['cpu_seconds'] for c in costs) / sum(c['seconds'] for c in costs):.2f}"


def _reference_runs(folder: Path) -> list[dict]:
    """Every ``scratch`` fine-tuning result (no probe) among the result files in ``folder``."""
    results = [json.loads(path.read_text()) for path in sorted(folder.glob(f"finetune__{REFERENCE}__*.json"))]
    return [r for r in results if not r["config"]["probe"]]


def reference_seconds(folder: Path = V1_RESULTS) -> dict[str, list[float]]:
    """Fine-tuning seconds of every ``scratch`` run (no probe) among the result files in ``folder``, by setting."""
    by_setting: dict[str, list[float]] = {}
    for result in _reference_runs(folder):
        by_setting.setdefault(result["config"]["setting"], []).append(result["cost"]["train"]["seconds"])
    return by_setting


def reference_epochs(folder: Path = V1_RESULTS) -> dict[str, list[int]]:
    """Epochs run by every ``scratch`` fine-tuning run (no probe) among the result files in ``folder``, by setting."""
    by_setting: dict[str, list[int]] = {}
    for result in _reference_runs(folder):
        by_setting.setdefault(result["config"]["setting"], []).append(result["epochs"])
    return by_setting


def read_cost_ratio(folder: Path) -> dict | None:
    """The paired measurement of a size's epoch cost against v1's in its results folder (``cost_ratio.json``), if any
    was made against v1."""
    path = folder / COST_RATIO_FILE
    if not path.is_file():
        return None
    paired = json.loads(path.read_text())
    return paired if paired.get("reference") == "v1" else None


def _paired_estimate(paired: Mapping | None, setting: str, runs, epochs: Sequence[int]) -> tuple[float, str] | None:
    """The run cost's ratio to v1's from the paired epoch cost and the epochs runs lasted, and its description."""
    if not paired or paired.get("setting") != setting or not epochs:
        return None
    mean_epochs, v1_epochs = float(np.mean([r["epochs"] for r in runs])), float(np.mean(epochs))
    estimate = paired["ratio_median"] * mean_epochs / v1_epochs
    rounds = len(paired["rounds"])
    return estimate, (f"an epoch {paired['ratio_median']:.2f} x v1's (median of {rounds} rounds timed in turn, "
                      f"`{COST_RATIO_FILE}`, {paired['finished'][:10]}), {mean_epochs / v1_epochs:.2f} x v1's epochs "
                      f"per run ({mean_epochs:.0f} against {v1_epochs:.0f})")


def fine_tuning_cost(finetunes, settings: Sequence[str], seeds: Sequence[int],
                     reference: Mapping[str, Sequence[float]], paired: Mapping | None = None,
                     epochs: Mapping[str, Sequence[int]] | None = None) -> tuple[Criterion, list[str]]:
    """``scratch``'s fine-tuning cost per run against v1's, and epochs to the plateau per setting; the criterion and
    its table.

    A run is compared with v1's runs of the same labelled setting (the same number of volumes per epoch), so the
    criterion uses the settings that both have; the others are shown for their cost alone.

    Args:
        reference: v1's ``scratch`` fine-tuning seconds per run, by setting.
        paired: the paired measurement of an epoch's cost against v1's (:func:`read_cost_ratio`), if any.
        epochs: v1's ``scratch`` runs' epochs, by setting (:func:`reference_epochs`; with ``paired``).
    """
    target = (f"`{REFERENCE}` cost per run <= {COST_RATIO_TARGET:g} x v1's, in every setting v1 also ran (paired "
              "epoch cost x epochs per run where measured, else recorded seconds)")
    common = [s for s in settings if reference.get(s)]
    v1 = {s: float(np.mean(reference[s])) for s in common}
    table = [f"`{REFERENCE}` fine-tuning per run (one CPU thread; `cost.train.seconds` of the result files; plateau: the "
             "epoch of the best validation Dice); x v1: over v1's `scratch` runs of the same setting"
             + "".join(f", {s} {v1[s]:.0f} s mean over {len(reference[s])} runs" for s in common)
             + "; x v1, paired: an epoch's cost against v1's measured with the two timed in turn on one machine, times "
             "the ratio of the epochs per run (where measured); CPU share: the runs' CPU seconds over their wall seconds "
             "(about 1 for a one-thread run that had a core to itself; lower: the machine was shared and the seconds "
             "overstate the cost; - where not recorded):", "",
             "| setting | runs | seconds (mean) | x v1 | x v1, paired | epochs to the plateau (median, range) "
             "| epochs run (median) | CPU share |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    ratios: dict[str, tuple[float, str]] = {}
    for setting in settings:
        runs = list(finetunes.get((REFERENCE, setting, False), {}).values())
        if not runs:
            table.append(f"| {setting} | 0 | - | - | - | - | - | - |")
            continue
        seconds, plateau = float(np.mean(_train_seconds(runs))), [r["best_metric_epoch"] for r in runs]
        by_seconds, estimate = "-", None
        if setting in v1:
            n = len(runs)
            recorded = f"{seconds:.0f} s against {v1[setting]:.0f} s per run, {n} run{'s' * (n != 1)}"
            by_seconds = f"{seconds / v1[setting]:.2f}"
            estimate = _paired_estimate(paired, setting, runs, (epochs or {}).get(setting, []))
            ratios[setting] = ((estimate[0], f"{estimate[0]:.2f} x v1 ({estimate[1]}; recorded seconds {by_seconds} x "
                                f"v1: {recorded})") if estimate else
                               (seconds / v1[setting], f"{by_seconds} x v1 (recorded seconds: {recorded})"))
        table.append(f"| {setting} | {len(runs)} | {seconds:.0f} | {by_seconds} | "
                     f"{f'{estimate[0]:.2f}' if estimate else '-'} | {np.median(plateau):.0f} "
                     f"({min(plateau)}-{max(plateau)}) | {np.median([r['epochs'] for r in runs]):.0f} "
                     f"| {cpu_share(runs)} |")
    missing = [m for s in common for m in _missing(finetunes, REFERENCE, s, seeds)]
    if not ratios:
        none = f"not measured yet (no v1 `{REFERENCE}` run in {', '.join(settings)})"
        state = _not_measured(missing) if missing else none
        return Criterion("Cost (fine-tuning)", "-", target, state), table + [""]
    measured = "; ".join(f"{s}: {description}" for s, (_, description) in ratios.items())
    held = all(r <= COST_RATIO_TARGET for r, _ in ratios.values())
    state = _not_measured(missing) if missing else HOLDS if held else FAILS
    return Criterion("Cost (fine-tuning)", measured, target, state), table + [""]


def difficulty_criteria(finetunes, size, reference: Mapping[str, Sequence[float]] | None = None,
                        paired: Mapping | None = None, epochs: Mapping[str, Sequence[int]] | None = None) -> list[str]:
    """The report's section: the four criteria (measured, target, state), the per-organ Dice and the cost table.

    Args:
        finetunes: ``finetunes[arm, setting, probe][seed]`` (:func:`semcl_benchmark.results.by_stage`).
        size: the size (its seeds, settings and atlas arms are the runs each criterion needs).
        reference: v1's ``scratch`` fine-tuning seconds per run by setting (default: :func:`reference_seconds`).
        paired: the size's paired measurement of an epoch's cost against v1's (:func:`read_cost_ratio`), if any.
        epochs: v1's ``scratch`` runs' epochs by setting (default: :func:`reference_epochs`).
    """
    seeds = list(size.seeds)
    atlases = [a for a in size.arms if is_atlas(a)]
    reference = reference_seconds() if reference is None else reference
    cover, organs = coverage(finetunes, seeds)
    epochs = reference_epochs() if epochs is None else epochs
    cost, costs = fine_tuning_cost(finetunes, list(size.settings), seeds, reference, paired, epochs)
    criteria = [headroom(finetunes, seeds), learning_needed(finetunes, atlases, seeds), cover, cost]
    held = sum(c.state == HOLDS for c in criteria)
    failed = sum(c.state == FAILS for c in criteria)
    lines = ["## Difficulty criteria (issue 20: `scratch` and atlases only)", "",
             f"{held} of {len(criteria)} criteria hold, {failed} fail, {len(criteria) - held - failed} not measured yet "
             f"(a criterion is decided once every run it needs has finished: seeds {', '.join(map(str, seeds))}).", "",
             "| criterion | measured | target | state |", "| --- | --- | --- | --- |"]
    lines += [f"| {c.name} | {c.measured} | {c.target} | **{c.state}** |" for c in criteria]
    return lines + [""] + organs + costs
