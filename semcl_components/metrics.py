"""Training metrics of contrastive pretraining: embedding collapse statistics, cheap enough for every iteration."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["embedding_collapse_stats"]


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
