"""Budgets of the benchmark's runs: no run ends capped while improving; collapse is named; time-to-accuracy data."""

from __future__ import annotations

import pytest

from semcl_benchmark.snapshots import budget_epochs
from semcl_benchmark.stages import capped_while_improving, collapse


@pytest.mark.parametrize(
    "summary, capped",
    [
        ({"epochs_completed": 800, "max_epochs": 800, "best_metric_epoch": 800}, True),  # best at the cap
        ({"epochs_completed": 800, "max_epochs": 800, "best_metric_epoch": 680}, True),  # within the last 4 x 40
        ({"epochs_completed": 800, "max_epochs": 800, "best_metric_epoch": 640}, False),  # patience was used up
        ({"epochs_completed": 520, "max_epochs": 800, "best_metric_epoch": 360}, False),  # stopped early
        ({"epochs_completed": 800, "max_epochs": 800}, False),  # never validated
    ],
)
def test_a_run_at_its_cap_with_its_best_in_the_last_patience_window_was_still_improving(summary, capped):
    assert capped_while_improving(summary, val_interval=40, patience=4) is capped


def test_without_early_stopping_no_run_counts_as_capped():
    assert not capped_while_improving({"epochs_completed": 60, "max_epochs": 60, "best_metric_epoch": 60}, 60, 0)


def test_collapse_reads_the_last_epochs_monitors():
    healthy = [{"epoch": 1, "mean_effective_rank": 1.1, "mean_negative_cosine": 0.95},
               {"epoch": 2, "mean_effective_rank": 9.0, "mean_negative_cosine": 0.1}]
    assert collapse(healthy)["collapsed"] is False and collapse(healthy)["effective_rank"] == 9.0
    assert collapse(healthy[::-1])["collapsed"] is True
    assert collapse([{"epoch": 1, "mean_effective_rank": 3.0, "mean_negative_cosine": 0.93}])["collapsed"] is True
    assert collapse([{"epoch": 1, "mean_loss": 1.0}]) is None  # supervised pretraining logs no embeddings


def test_budget_fractions_take_the_nearest_snapshot_and_none_beyond_the_last():
    snapshots = [40, 80, 120, 160, 200]
    assert budget_epochs([0.25, 0.5, 1.0], 320, snapshots) == {0.25: 80, 0.5: 160, 1.0: None}
    assert budget_epochs([0.25], 200, snapshots) == {0.25: 40}  # 50: nearer 40 than 80
    assert budget_epochs([0.5], 100, snapshots) == {0.5: 40}  # 50 is as near 40 as 60 would be: the earlier
    assert budget_epochs([1.0], 210, snapshots) == {1.0: 200}  # within half an interval of the last
