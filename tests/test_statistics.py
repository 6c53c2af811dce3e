"""Statistics of the benchmark: two-level bootstrap intervals and the paired signed-rank test."""

from __future__ import annotations

import numpy as np
import pytest

from semcl_benchmark.statistics import hierarchical_bootstrap, paired_wilcoxon


def test_bootstrap_mean_and_interval_contain_the_truth():
    rng = np.random.default_rng(1)
    run_effect = rng.normal(0.0, 0.05, size=(8, 1))  # runs differ more than cases
    values = 0.7 + run_effect + rng.normal(0.0, 0.01, size=(8, 6))
    estimate = hierarchical_bootstrap(values, num_samples=4000)
    assert estimate.mean == pytest.approx(values.mean())
    assert estimate.low < estimate.mean < estimate.high
    # the interval reflects the spread of runs, not the much smaller spread of cases within a run
    assert estimate.high - estimate.low > 2 * 1.96 * 0.05 / np.sqrt(8) * 0.6


def test_paired_difference_removes_what_runs_share():
    rng = np.random.default_rng(2)
    shared = rng.normal(0.0, 0.1, size=(8, 5))  # each (seed, case) is hard or easy for both arms alike
    method, baseline = 0.75 + shared + 0.05, 0.75 + shared
    paired = hierarchical_bootstrap(method, baseline, num_samples=2000)
    assert paired.mean == pytest.approx(0.05) and paired.low == pytest.approx(0.05) and paired.high == pytest.approx(0.05)


def test_nan_cells_are_left_out():
    values = np.array([[0.5, np.nan], [0.7, 0.9]])
    assert hierarchical_bootstrap(values, num_samples=500).mean == pytest.approx(0.7)


def test_bootstrap_is_reproducible_and_checks_shapes():
    values = np.random.default_rng(3).random((4, 3))
    assert hierarchical_bootstrap(values, seed=5) == hierarchical_bootstrap(values, seed=5)
    with pytest.raises(ValueError, match="pair seeds and cases"):
        hierarchical_bootstrap(values, values[:, :2])
    with pytest.raises(ValueError, match=r"\(seeds, cases\)"):
        hierarchical_bootstrap([1.0, 2.0])


def test_wilcoxon_needs_eight_seeds_for_p_below_001():
    better = np.arange(8) * 0.01 + 0.1
    assert paired_wilcoxon(better + 0.05, better) == pytest.approx(2 / 2**8)  # every seed better: the smallest p
    assert paired_wilcoxon(better[:5] + 0.05, better[:5]) == pytest.approx(2 / 2**5)  # 0.0625 with 5 seeds
    assert paired_wilcoxon(better, better) == 1.0
    mixed = np.array([0.02, -0.01, 0.03, -0.02, 0.01, -0.03, 0.005, -0.004])
    assert paired_wilcoxon(better + mixed, better) > 0.3
