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


# ------------------------------------------------------------------------------------------- embedding quality


def _silhouette_loop(x: torch.Tensor, y: list[int]) -> float:
    """The textbook definition, one sample at a time, with cosine distance."""
    z = torch.nn.functional.normalize(x.double(), dim=1)
    d = 1.0 - z @ z.T
    scores = []
    for i in range(len(y)):
        same = [j for j in range(len(y)) if y[j] == y[i] and j != i]
        if not same:
            scores.append(0.0)
            continue
        a = float(d[i, same].mean())
        b = min(float(d[i, [j for j in range(len(y)) if y[j] == c]].mean()) for c in set(y) if c != y[i])
        scores.append((b - a) / max(a, b))
    return sum(scores) / len(scores)


def test_silhouette_matches_the_definition():
    from semcl_components.metrics import silhouette_score

    x = torch.randn(13, 6, generator=torch.Generator().manual_seed(0))
    y = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3]  # class 3 has one member
    assert silhouette_score(x, torch.tensor(y)) == pytest.approx(_silhouette_loop(x, y), abs=1e-9)


def test_silhouette_of_separate_and_of_mixed_clusters():
    from semcl_components.metrics import silhouette_score

    separate = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    assert silhouette_score(separate, torch.tensor([0, 0, 1, 1])) > 0.9
    assert silhouette_score(separate, torch.tensor([0, 1, 0, 1])) < 0
    assert silhouette_score(separate, torch.tensor([0, 0, 0, 0])) != silhouette_score(separate, torch.tensor([0, 0, 0, 0]))


def test_knn_accuracy_recognises_held_out_objects():
    from semcl_components.metrics import knn_accuracy

    reference = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([1, 1, 2, 2])
    queries = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.8, 0.2]])
    assert knn_accuracy(reference, labels, queries, torch.tensor([1, 2, 1]), k=3) == pytest.approx(1.0)
    assert knn_accuracy(reference, labels, queries, torch.tensor([2, 2, 2]), k=1) == pytest.approx(1 / 3)


def test_pca_projection_keeps_the_main_spread():
    from semcl_components.metrics import pca_projection

    x = torch.zeros(20, 5)
    x[:, 3] = torch.linspace(-5, 5, 20)  # all variance along one axis
    coords = pca_projection(x)
    assert coords.shape == (20, 2)
    assert coords[:, 0].abs().max() == pytest.approx(5.0) and coords[:, 1].abs().max() < 1e-9
