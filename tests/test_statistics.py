"""Statistics of the benchmark: crossed and two-level bootstrap intervals, the paired signed-rank test, Holm."""

from __future__ import annotations

import numpy as np
import pytest

from semcl_benchmark.statistics import bonferroni, crossed_bootstrap, hierarchical_bootstrap, holm, paired_wilcoxon


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


def test_crossed_bootstrap_draws_the_test_cases_once_for_all_seeds():
    # no seed effect; case 0 scores 0.2 and case 1 scores 0.8 in every run. A replicate draws the cases once:
    # (0, 0), (0, 1), (1, 0), (1, 1) with mean 0.2, 0.5, 0.5, 0.8, so a quarter of the replicates sit at each end.
    values = np.array([[0.2, 0.8]] * 8)
    crossed = crossed_bootstrap(values, num_samples=4000)
    assert (crossed.mean, crossed.low, crossed.high) == pytest.approx((0.5, 0.2, 0.8))
    # drawn independently within each of 8 seeds, the two hard cases average out: a far narrower interval
    nested = hierarchical_bootstrap(values, num_samples=4000)
    assert nested.high - nested.low < 0.6 * (crossed.high - crossed.low)


def test_crossed_bootstrap_resamples_seeds():
    values = np.array([[0.4, 0.4, 0.4], [0.6, 0.6, 0.6]])  # a seed effect only: both ends are drawn a quarter each
    estimate = crossed_bootstrap(values, num_samples=4000)
    assert (estimate.low, estimate.high) == pytest.approx((0.4, 0.6))


def test_crossed_bootstrap_of_a_paired_difference_removes_what_runs_share():
    rng = np.random.default_rng(4)
    shared = rng.normal(0.0, 0.1, size=(8, 5)) + rng.normal(0.0, 0.2, size=(1, 5))  # seed-case cells and hard cases
    paired = crossed_bootstrap(0.8 + shared, 0.75 + shared, num_samples=2000)
    assert (paired.mean, paired.low, paired.high) == pytest.approx((0.05, 0.05, 0.05))
    alone = crossed_bootstrap(0.8 + shared, num_samples=2000)
    assert alone.high - alone.low > 0.1


def test_crossed_bootstrap_leaves_nan_out_and_checks_its_input():
    values = np.array([[0.5, np.nan], [0.7, 0.9]])
    assert crossed_bootstrap(values, num_samples=500).mean == pytest.approx(0.7)
    with pytest.raises(ValueError, match="pair seeds and cases"):
        crossed_bootstrap(values, values[:, :1])
    with pytest.raises(ValueError, match="confidence"):
        crossed_bootstrap(values, confidence=95)


def test_holm_against_hand_computed_values():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.5 x 2 = 1.0; 0.9 x 1 = 0.9 is raised to 1.0: an adjusted p never falls below one of a smaller raw p
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    # the v1 audit: the one p = 2/2**8 among 12 tests is p ~ 0.09 after correction
    assert holm([2 / 2**8] + [0.5] * 11)[0] == pytest.approx(12 * 2 / 2**8)


def test_holm_leaves_missing_tests_out_of_the_family():
    adjusted = holm([0.01, float("nan"), 0.02])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02) and np.isnan(adjusted[1])
    assert holm([]) == []


def test_bonferroni_against_hand_computed_values():
    assert bonferroni([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert bonferroni([0.3, 0.5]) == pytest.approx([0.6, 1.0])


@pytest.mark.parametrize("adjust", [holm, bonferroni])
def test_adjustments_refuse_what_is_not_a_p_value(adjust):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust([0.2, 1.5])
    with pytest.raises(ValueError, match="one p-value per test"):
        adjust([[0.2, 0.3]])
