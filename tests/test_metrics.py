"""Tests of semcl_components.metrics: embedding collapse statistics."""

from __future__ import annotations

import pytest
import torch

from semcl_components.metrics import embedding_collapse_stats



def test_collapse_stats_identical_embeddings():
    stats = embedding_collapse_stats(torch.ones(6, 4) * 0.3, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert stats["positive_cosine"] == pytest.approx(1.0)
    assert stats["negative_cosine"] == pytest.approx(1.0)
    assert stats["effective_rank"] == pytest.approx(1.0)
    assert stats["embedding_std"] == pytest.approx(0.0, abs=1e-7)


def test_collapse_stats_orthogonal_embeddings():
    stats = embedding_collapse_stats(torch.eye(6, 8) * 2.0, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert stats["positive_cosine"] == pytest.approx(0.0)
    assert stats["negative_cosine"] == pytest.approx(0.0)
    assert stats["effective_rank"] == pytest.approx(5.0)  # centring removes one direction: N - 1


def test_collapse_stats_hand_made_cosines():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    stats = embedding_collapse_stats(e, torch.tensor([0, 0, 1]))
    assert stats["positive_cosine"] == pytest.approx(2**-0.5)
    assert stats["negative_cosine"] == pytest.approx((-1.0 - 2**-0.5) / 2)  # pairs (0, 2), (1, 2), both ways


def test_collapse_stats_without_positive_pairs_is_nan_only_there():
    stats = embedding_collapse_stats(torch.eye(3), torch.tensor([0, 1, 2]))
    assert stats["positive_cosine"] != stats["positive_cosine"]  # NaN
    assert stats["negative_cosine"] == pytest.approx(0.0)
    assert stats["effective_rank"] == pytest.approx(2.0)
