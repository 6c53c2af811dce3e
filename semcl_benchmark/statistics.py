"""Statistics for side-by-side comparisons where the training run is the unit: seeds, and test cases within a seed.

A low-label segmentation result varies more between training runs (seeds) than between the test cases of one run, so
a confidence interval must resample both levels, and a test of one arm against another must pair runs by seed
(:func:`paired_wilcoxon`), never treat the cases of one run as independent samples.

Two designs, two bootstraps:

- :func:`crossed_bootstrap` (benchmark v2): every seed is its own draw of training data and all seeds are tested on
  one shared, fixed set of test cases, so seeds and cases are *crossed*. A replicate resamples the seeds, and the
  test cases once, the same cases for every drawn seed: a hard test case is hard for every run, and the interval
  carries that.
- :func:`hierarchical_bootstrap` (benchmark v1, kept so its report regenerates identically): test cases resampled
  independently within each drawn seed, as if each seed had its own test cases. With a shared test set this
  understates the spread the test cases cause.

A family of tests is corrected for multiplicity with :func:`holm` (or :func:`bonferroni`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Estimate", "bonferroni", "crossed_bootstrap", "hierarchical_bootstrap", "holm", "paired_wilcoxon"]


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


def _paired(values: np.ndarray | list, baseline: np.ndarray | list | None, confidence: float) -> np.ndarray:
    """``values`` (or ``values - baseline``, paired by seed and case) as ``(seeds, cases)``, the arguments checked."""
    values = _as_runs(values)
    if baseline is not None:
        baseline = _as_runs(baseline)
        if baseline.shape != values.shape:
            raise ValueError(f"values {values.shape} and baseline {baseline.shape} must pair seeds and cases.")
        values = values - baseline
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    return values


def _estimate(values: np.ndarray, cells: np.ndarray, confidence: float) -> Estimate:
    """The mean of ``values`` with the percentile interval of the bootstrap means of ``cells`` ``(samples, ...)``."""
    with warnings.catch_warnings():  # a sample of only NaN cells has no mean: it is left out below
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(cells.reshape(cells.shape[0], -1), axis=1)
    means = means[np.isfinite(means)]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail]) if means.size else (np.nan, np.nan)
    return Estimate(float(np.nanmean(values)), float(low), float(high))


def crossed_bootstrap(
    values: np.ndarray | list,
    baseline: np.ndarray | list | None = None,
    num_samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values`` (or of ``values - baseline``) with a crossed bootstrap confidence interval.

    For seeds crossed with one shared set of test cases (every seed tested on the same cases). Each bootstrap sample
    draws seeds with replacement and, once, test cases with replacement, and takes the mean over every (drawn seed,
    drawn case) cell: all drawn seeds see the same drawn cases. NaN cells (e.g. an organ absent from a case) are left
    out of each mean. With ``baseline`` (same shape: the same seeds and the same test cases of another arm), the same
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
    values = _paired(values, baseline, confidence)
    rng = np.random.default_rng(seed)
    seeds, cases = values.shape
    seed_draws = rng.integers(0, seeds, size=(num_samples, seeds))
    case_draws = rng.integers(0, cases, size=(num_samples, cases))
    cells = values[seed_draws[:, :, None], case_draws[:, None, :]]  # (num_samples, seeds, cases)
    return _estimate(values, cells, confidence)


def hierarchical_bootstrap(
    values: np.ndarray | list,
    baseline: np.ndarray | list | None = None,
    num_samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of ``values`` (or of ``values - baseline``) with a two-level (nested) bootstrap confidence interval.

    Benchmark v1's interval, kept so that its report regenerates identically; for seeds that share their test cases
    use :func:`crossed_bootstrap`. Each bootstrap sample draws seeds with replacement, then, for every drawn seed,
    test cases with replacement (independently per seed), and takes the mean over the drawn (seed, case) cells; NaN
    cells are left out of each mean. With ``baseline`` (same shape), the *same* seeds and cases are drawn for both,
    so the interval is that of the paired difference.

    Args:
        values: ``(seeds, cases)``, e.g. the mean Dice of every test case in every run of one arm.
        baseline: ``(seeds, cases)`` of the arm to subtract, paired by seed and case; ``None`` for no subtraction.
        num_samples: bootstrap samples.
        confidence: e.g. 0.95 for a 95% interval (percentile method).
        seed: of the bootstrap's own random generator, so a report is reproducible.

    Returns:
        :class:`Estimate` of the mean (over all non-NaN cells) and its interval.
    """
    values = _paired(values, baseline, confidence)
    rng = np.random.default_rng(seed)
    seeds, cases = values.shape
    seed_draws = rng.integers(0, seeds, size=(num_samples, seeds))
    case_draws = rng.integers(0, cases, size=(num_samples, seeds, cases))
    cells = values[seed_draws[:, :, None], case_draws]  # (num_samples, seeds, cases)
    return _estimate(values, cells, confidence)


def _p_values(p_values: Sequence[float]) -> np.ndarray:
    array = np.asarray(p_values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"p_values must be one p-value per test, got shape {array.shape}.")
    if np.any((array < 0) | (array > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {array.tolist()}.")
    return array


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of one family of tests, in the order given.

    Sorted ascending, the ``i``-th smallest of ``m`` p-values (``i`` from 0) becomes ``(m - i) * p``, made
    non-decreasing along the order and capped at 1. A test is significant at level ``alpha`` over the family when its
    adjusted p is below ``alpha``; this controls the family-wise error rate like Bonferroni, with more power. NaN
    (a test without results) stays NaN and is not counted in ``m``.
    """
    p = _p_values(p_values)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni-adjusted p-values: each times the number of tests ``m`` (NaN not counted), capped at 1."""
    p = _p_values(p_values)
    m = int(np.isfinite(p).sum())
    return np.minimum(1.0, p * m).tolist()


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
