"""Metrics of contrastive pretraining: collapse statistics for every iteration, and embedding quality by class.

- :func:`embedding_collapse_stats`: cheap per-iteration monitors (positive/negative cosine, effective rank, spread);
- :func:`silhouette_score`, :func:`knn_accuracy`, :func:`pca_projection`: how well object embeddings cluster by organ,
  and whether objects of held-out subjects are recognised from those of the pretraining pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["embedding_collapse_stats", "knn_accuracy", "pca_projection", "silhouette_score"]


def _effective_rank(embeddings: torch.Tensor) -> float:
    """Roy & Vetterli (2007) effective rank of the centred ``(N, D)`` matrix; 1.0 when all rows coincide."""
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    # singular values at the round-off level of the centring are zero (identical rows leave only round-off)
    tol = max(embeddings.shape) * torch.finfo(embeddings.dtype).eps * max(float(embeddings.norm()), 1.0)
    singular = singular[singular > tol]
    if singular.numel() == 0:
        return 1.0
    p = singular / singular.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def embedding_collapse_stats(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Collapse diagnostics of a set of embeddings, cheap enough for every iteration.

    Args:
        embeddings: ``(N, D)``; rows are L2-normalised here (cosine similarity).
        labels: ``(N,)`` class ids.

    Returns:
        ``positive_cosine``: mean cosine over pairs ``i != j`` with the same label;
        ``negative_cosine``: mean cosine over pairs with different labels;
        ``effective_rank``: ``exp(entropy(s / sum(s)))`` of the singular values ``s`` of the centred, row-normalised
        embedding matrix (Roy & Vetterli 2007): ~1 when all embeddings coincide (defined as 1.0 for a single
        point), up to ``min(N - 1, D)`` when they spread evenly.
        ``embedding_std``: mean over dimensions of the standard deviation of the row-normalised embeddings,
        ~``1 / sqrt(D)`` when spread and 0 when collapsed (scale-aware, unlike the effective rank, which only
        measures the shape of the spread);
        ``num_samples``: ``N``.
        An entry that has no pair or sample to average (e.g. no two samples share a label, or ``N < 2`` for
        ``embedding_std``) is ``float('nan')``; the other entries stay valid. Nothing is ever NaN otherwise.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"expected embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}."
        )
    n = embeddings.shape[0]
    keys = ("positive_cosine", "negative_cosine", "effective_rank", "embedding_std")
    stats = {key: float("nan") for key in keys}
    stats["num_samples"] = float(n)
    if n == 0:
        return stats
    z = F.normalize(embeddings.detach().double(), dim=1)
    cosine = z @ z.T
    same = labels.to(z.device)[:, None] == labels.to(z.device)[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool, device=z.device)
    for key, pairs in (("positive_cosine", positive), ("negative_cosine", ~same)):
        if pairs.any():
            stats[key] = float(cosine[pairs].mean())
    stats["effective_rank"] = _effective_rank(z)
    if n > 1:
        stats["embedding_std"] = float(z.std(dim=0).mean())
    return stats


def _cosine_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(A, B)`` cosine distances ``1 - cos`` between the rows of ``a`` ``(A, D)`` and ``b`` ``(B, D)``."""
    return 1.0 - F.normalize(a.double(), dim=1) @ F.normalize(b.double(), dim=1).T


@torch.no_grad()
def silhouette_score(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette of ``(N, D)`` embeddings grouped by ``(N,)`` labels, with cosine distance.

    For sample ``i``: ``a`` = mean distance to the other members of its class, ``b`` = the smallest mean distance
    to another class, ``s = (b - a) / max(a, b)`` (0 for a class of one). 1: tight, separate clusters; about 0:
    overlapping; negative: samples closer to another class. NaN with fewer than two classes.
    """
    labels = labels.to(embeddings.device)
    classes = labels.unique()
    if classes.numel() < 2:
        return float("nan")
    distances = _cosine_distances(embeddings, embeddings)
    member = labels[None, :] == classes[:, None]  # (K, N)
    sums = distances @ member.double().T  # (N, K): summed distance of each sample to each class
    counts = member.sum(1).double()  # (K,)
    own = labels[:, None] == classes[None, :]  # (N, K)
    own_counts = (counts[None, :] - own.double()).clamp_min(1)  # the others of the own class
    a = (sums * own).sum(1) / (own_counts * own).sum(1)
    b = torch.where(own, torch.full_like(sums, float("inf")), sums / counts[None, :]).min(1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    singleton = (counts[None, :] * own).sum(1) == 1
    return float(torch.where(singleton, torch.zeros_like(s), s).mean())


@torch.no_grad()
def knn_accuracy(
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    k: int = 5,
) -> float:
    """Share of ``queries`` whose ``k`` nearest ``reference`` embeddings (cosine) vote for the query's own label.

    Ties go to the label of the nearest of the tied neighbours. For objects of held-out subjects (queries) against
    those of the pretraining pool (reference), it measures whether the embedding recognises an organ it has not seen.
    """
    if queries.shape[0] == 0:
        return float("nan")
    k = min(k, reference.shape[0])
    nearest = _cosine_distances(queries, reference).topk(k, dim=1, largest=False).indices  # (Q, k), nearest first
    votes = reference_labels.to(nearest.device)[nearest]  # (Q, k)
    predicted = []
    for row in votes:
        values, counts = row.unique(return_counts=True)
        tied = values[counts == counts.max()]
        predicted.append(next(v for v in row.tolist() if v in tied.tolist()))  # the nearest among the tied labels
    return float((torch.tensor(predicted) == query_labels.cpu()).double().mean())


@torch.no_grad()
def pca_projection(embeddings: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """``(N, dims)`` coordinates of ``(N, D)`` embeddings on their first principal components (for a plot)."""
    centred = embeddings.double() - embeddings.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:dims].T
