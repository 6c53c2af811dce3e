"""The numbers every part of the report shares: a run's mean Dice, paired comparisons by seed, and their formats.

Statistics take the training run as the unit: per arm and setting, the mean test Dice with a bootstrap 95% interval
over seeds and test cases (v1: two-level, :func:`~semcl_benchmark.statistics.hierarchical_bootstrap`; v2: crossed,
:func:`~semcl_benchmark.statistics.crossed_bootstrap`, passed as ``bootstrap``); each method arm against each
baseline, the paired difference (same seeds, same cases) with its interval and a two-sided Wilcoxon signed-rank
p-value over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..statistics import Estimate, hierarchical_bootstrap, paired_wilcoxon

__all__ = [
    "ALPHA",
    "MIN_SEEDS_FOR_INTERVAL",
    "TARGET_GAIN",
    "beats",
    "case_means",
    "compare",
    "dice_grid",
    "format_difference",
    "format_estimate",
    "format_mean_dice",
    "format_p",
    "is_method",
    "mean_dice",
    "seed_differences",
]

TARGET_GAIN = 0.05  # the target: +5 Dice points over random init
ALPHA = 0.01
METHOD_PREFIX = "semcl"
"""Arms whose name starts with this are the method's; all others are baselines (``protocol.yaml``)."""


def is_method(arm: str) -> bool:
    """Whether ``arm`` is one of the method's arms (else a baseline)."""
    return arm.startswith(METHOD_PREFIX)


def case_means(result: dict) -> np.ndarray:
    """Mean Dice over the organs of every test case of one run (organs absent from a case left out)."""
    dice = np.array([[np.nan if v is None else v for v in row] for row in result["test"]["dice"]], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nanmean(dice, axis=1)


def mean_dice(result: dict) -> float:
    """A run's mean test Dice: the mean over test cases of each case's mean organ Dice."""
    return float(np.nanmean(case_means(result)))


def dice_grid(runs: dict[int, dict], seeds: Sequence[int], organ: int | None = None) -> np.ndarray:
    """``(seeds, cases)`` of the case-mean Dice (or one organ's Dice) of the given seeds' runs."""
    rows = []
    for seed in seeds:
        result = runs[seed]
        if organ is None:
            rows.append(case_means(result))
        else:
            rows.append([np.nan if row[organ] is None else row[organ] for row in result["test"]["dice"]])
    return np.asarray(rows, dtype=np.float64)


MIN_SEEDS_FOR_INTERVAL = 2  # one run is one sample: resampling its test cases alone would feign precision


def format_estimate(estimate: Estimate, seeds: int) -> str:
    if seeds < MIN_SEEDS_FOR_INTERVAL:
        return f"{estimate.mean:.3f} [no interval: 1 seed]"
    return f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def format_mean_dice(runs: dict[int, dict], bootstrap=hierarchical_bootstrap) -> str:
    """The mean test Dice of an arm's runs (by seed) with its bootstrap interval (``bootstrap``: see the module)."""
    return format_estimate(bootstrap(dice_grid(runs, sorted(runs))), len(runs))


def format_difference(estimate: Estimate, seeds: int) -> str:
    if seeds < MIN_SEEDS_FOR_INTERVAL:
        return f"{estimate.mean:+.3f} [no interval: 1 seed]"
    return f"{estimate.mean:+.3f} [{estimate.low:+.3f}, {estimate.high:+.3f}]"


def format_p(p: float) -> str:
    return "n/a" if p != p else f"{p:.4f}"


def compare(
    finetunes, method: str, baseline: str, setting: str, probe: bool = False, bootstrap=hierarchical_bootstrap
):
    """``method`` against ``baseline`` in ``setting``, paired by seed: ``(difference, Wilcoxon p, seeds)`` or ``None``.

    ``difference`` is the bootstrap estimate (mean and 95% interval over seeds and test cases; ``bootstrap``: see the
    module) of the difference in case-mean test Dice; ``p`` is NaN with one seed.
    """
    a, b = finetunes.get((method, setting, probe), {}), finetunes.get((baseline, setting, probe), {})
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    grid_a, grid_b = dice_grid(a, seeds), dice_grid(b, seeds)
    difference = bootstrap(grid_a, grid_b)
    p = paired_wilcoxon(np.nanmean(grid_a, axis=1), np.nanmean(grid_b, axis=1)) if len(seeds) > 1 else float("nan")
    return difference, p, len(seeds)


def beats(comparison, target: float) -> bool:
    """Whether a :func:`compare` result shows a gain of at least ``target``, its interval above 0, at p < ALPHA."""
    difference, p, n = comparison
    return n >= MIN_SEEDS_FOR_INTERVAL and difference.mean >= target and difference.low > 0 and p < ALPHA


def seed_differences(runs: dict[int, dict], baseline: dict[int, dict]) -> list[float]:
    """Mean test Dice of ``runs`` minus that of ``baseline``, one per seed both hold."""
    return [mean_dice(runs[s]) - mean_dice(baseline[s]) for s in sorted(set(runs) & set(baseline))]
