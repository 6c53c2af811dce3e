"""Statistics for side-by-side comparisons where the training run is the unit: seeds, and test cases within a seed.

A low-label segmentation result varies more between training runs (seeds) than between the test cases of one run, so
a confidence interval must resample both levels (:func:`hierarchical_bootstrap`), and a test of one arm against
another must pair runs by seed (:func:`paired_wilcoxon`), never treat the cases of one run as independent samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Estimate", "hierarchical_bootstrap", "paired_wilcoxon"]


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_runs(values: np.ndarray | list) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"values must be (seeds, cases) with at least one of each, got shape {array.shape}.")
    return array


def hierarchical_bootstrap(
    values: np.ndarray | list,
    baseline: np.ndarray | list | None = None,
    num_samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values`` (or of ``values - baseline``) with a two-level bootstrap confidence interval.

    Each bootstrap sample draws seeds with replacement, then, for every drawn seed, test cases with replacement, and
    takes the mean over the drawn (seed, case) cells; NaN cells (e.g. an organ absent from a case) are left out of
    each mean. With ``baseline`` (same shape: the same seeds and the same test cases of another arm), the *same*
    seeds and cases are drawn for both, so the interval is that of the paired difference.

    Args:
        values: ``(seeds, cases)``, e.g. the mean Dice of every test case in every run of one arm.
        baseline: ``(seeds, cases)`` of the arm to subtract, paired by seed and case; ``None`` for no subtraction.
        num_samples: bootstrap samples.
        confidence: e.g. 0.95 for a 95% interval (percentile method).
        seed: of the bootstrap's own random generator, so a report is reproducible.

    Returns:
        :class:`Estimate` of the mean (over all non-NaN cells) and its interval.
    """
    values = _as_runs(values)
    if baseline is not None:
        baseline = _as_runs(baseline)
        if baseline.shape != values.shape:
            raise ValueError(f"values {values.shape} and baseline {baseline.shape} must pair seeds and cases.")
        values = values - baseline
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    rng = np.random.default_rng(seed)
    seeds, cases = values.shape
    seed_draws = rng.integers(0, seeds, size=(num_samples, seeds))
    case_draws = rng.integers(0, cases, size=(num_samples, seeds, cases))
    cells = values[seed_draws[:, :, None], case_draws]  # (num_samples, seeds, cases)
    with np.errstate(invalid="ignore"):
        means = np.nanmean(cells.reshape(num_samples, -1), axis=1)
    means = means[np.isfinite(means)]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail]) if means.size else (np.nan, np.nan)
    return Estimate(float(np.nanmean(values)), float(low), float(high))


def paired_wilcoxon(method: np.ndarray | list, baseline: np.ndarray | list) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``method`` vs ``baseline``, paired by seed.

    Args:
        method: one number per seed (e.g. a run's mean test Dice), ``(seeds,)``.
        baseline: the other arm's numbers for the same seeds.

    Returns:
        the p-value (exact distribution for small samples without ties, as ``scipy.stats.wilcoxon`` chooses);
        1.0 when every difference is zero. With ``n`` seeds the smallest two-sided p-value is ``2 / 2**n``
        (8 seeds: 0.0078; 5 seeds: 0.0625), so fewer than 8 seeds cannot show p < 0.01.
    """
    from scipy.stats import wilcoxon

    method, baseline = np.asarray(method, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if method.shape != baseline.shape or method.ndim != 1:
        raise ValueError(f"method {method.shape} and baseline {baseline.shape} must be (seeds,) alike.")
    differences = method - baseline
    if np.all(differences == 0):
        return 1.0
    return float(wilcoxon(method, baseline, alternative="two-sided").pvalue)
