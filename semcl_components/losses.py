"""The semantic-aware supervised contrastive loss over object embeddings."""

from __future__ import annotations

import math

import ignite.distributed as idist
import torch
import torch.nn.functional as F
from monai.utils import evenly_divisible_all_gather
from torch.nn.modules.loss import _Loss

from .distributed import all_gather_with_grad

__all__ = ["SemanticSupConLoss", "positive_pair_mask"]


def positive_pair_mask(labels: torch.Tensor) -> torch.Tensor:
    """Positive pairs of a batch: ``mask[i, p]`` is True when ``p != i`` and both samples carry the same label.

    ``mask.sum()`` counts ordered pairs, e.g. two views of one object labelled by their instance id give 2.

    Args:
        labels: ``(N,)`` the key two samples must share to be positives (class ids, or instance ids for SimCLR).

    Returns:
        ``(N, N)`` bool tensor with a False diagonal.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got shape {tuple(labels.shape)}.")
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


class SemanticSupConLoss(_Loss):
    """Supervised contrastive loss over object embeddings, optionally intensity-weighted and gathered over ranks.

    The ``labels`` choose the positives: class ids (semantic-aware SupCon) or instance ids (SimCLR). For anchor ``i``
    with positives ``P(i)`` (the other samples with its label) and contrast set ``A(i)`` (all other samples)::

        L_i = -(tau / tau_base) * mean_{p in P(i)} [ s_ip / tau - log sum_{a in A(i)} exp(s_ia / tau) ]

    with ``s`` the cosine similarity of the L2-normalised embeddings; the loss is the mean of ``L_i`` over the anchors
    with a positive (0, still differentiable, without any). With ``intensity_weighting`` a non-positive ``a`` enters
    the denominator as ``exp((w_ia * s_ia + 1 - w_ia) / tau)``, ``w_ia = max(0, 1 - |mu_i - mu_a|)``. With
    ``gather_distributed`` every rank's samples form the contrast set and the mean of the rank losses equals the
    single-process loss on the whole batch; every rank must call ``forward`` and ``backward``. Derivations:
    ``docs/LOSS.md``.

    References:
        - Lee et al., "Semantic-Aware Contrastive Learning for Multi-object Medical Image Segmentation", IEEE JBHI
          2023, doi:10.1109/JBHI.2023.3285230 (arXiv:2106.01596); no code was released with it.
        - Lee et al., "Adaptive Contrastive Learning with Dynamic Correlation for Multi-Phase Organ Segmentation",
          2022 (the intensity weighting); code: https://github.com/MASILab/DCC_CL
        - Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, arXiv:2004.11362
        - Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020

    Example:
        >>> import torch
        >>> from semcl_components.losses import SemanticSupConLoss, positive_pair_mask
        >>> loss_fn = SemanticSupConLoss(temperature=0.3, base_temperature=0.07)
        >>> embeddings = torch.randn(6, 16, requires_grad=True)  # 3 objects x 2 views
        >>> labels = torch.tensor([1, 2, 2, 1, 2, 2])  # class of every object
        >>> loss = loss_fn(embeddings, labels)
        >>> loss.backward()
        >>> int(positive_pair_mask(labels).sum())  # ordered positive pairs
        14
    """

    def __init__(
        self,
        temperature: float = 0.3,
        base_temperature: float = 0.07,
        intensity_weighting: bool = False,
        gather_distributed: bool = False,
    ) -> None:
        """
        Args:
            temperature: ``tau`` dividing the cosine similarities, > 0 (authors' code: 0.3).
            base_temperature: ``tau_base``; the loss is scaled by ``tau / tau_base``, > 0 (authors' code: 0.07).
            intensity_weighting: weight the non-positive terms of the denominator by intensity similarity (DCC).
            gather_distributed: contrast against the samples of all ranks under torch.distributed.

        Raises:
            ValueError: when an argument has a wrong type or value.
        """
        super().__init__()
        self.temperature = _positive_float("temperature", temperature)
        self.base_temperature = _positive_float("base_temperature", base_temperature)
        self.intensity_weighting = _boolean("intensity_weighting", intensity_weighting)
        self.gather_distributed = _boolean("gather_distributed", gather_distributed)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, intensities: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            embeddings: ``(N, D)`` object embeddings (projection-head outputs; normalised here).
            labels: ``(N,)`` the key of every sample; samples with equal keys are positives (class ids, or the
                instance ids shared by the views of one object).
            intensities: ``(N,)`` mean normalised intensity inside every object's mask, in [0, 1]; required when
                ``intensity_weighting=True`` (ignored otherwise).

        Returns:
            the scalar loss.

        Raises:
            ValueError: when a required input is missing or a shape is wrong.
        """
        keys, intensities = self._check_inputs(embeddings, labels, intensities)
        if self.gather_distributed and idist.get_world_size() > 1:
            return self._distributed_loss(embeddings, keys, intensities)
        return self._local_loss(embeddings, keys, intensities)

    def _local_loss(
        self, embeddings: torch.Tensor, keys: torch.Tensor, intensities: torch.Tensor | None
    ) -> torch.Tensor:
        z = F.normalize(embeddings, dim=1)
        others = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        positive = (keys.unsqueeze(1) == keys.unsqueeze(0)) & others
        losses = self._anchor_losses(z, z, positive, others, intensities, intensities)
        if losses.numel() == 0:
            return embeddings.sum() * 0.0
        return losses.mean()

    def _distributed_loss(
        self, embeddings: torch.Tensor, keys: torch.Tensor, intensities: torch.Tensor | None
    ) -> torch.Tensor:
        n, dim = embeddings.shape
        sizes = idist.all_gather(n)  # (world_size,) samples on every rank
        rows = int(max(sizes))
        if rows == 0:  # no sample on any rank: no collective in backward either
            return embeddings.sum() * 0.0
        z = F.normalize(embeddings, dim=1)
        # every rank pads to `rows` for the differentiable gather; the padding rows are dropped again
        padded_z = all_gather_with_grad(torch.cat([z, z.new_zeros(rows - n, dim)]))
        real = torch.arange(rows).repeat(len(sizes)) < torch.tensor(sizes).repeat_interleave(rows)
        all_z = padded_z[real.to(z.device)]
        all_keys = evenly_divisible_all_gather(keys)
        all_intensities = None if intensities is None else evenly_divisible_all_gather(intensities)

        # columns: every rank's samples in rank order; this rank's start after those of the ranks before it
        own_columns = sum(sizes[: idist.get_rank()]) + torch.arange(n, device=z.device)
        others = torch.ones(n, all_z.shape[0], dtype=torch.bool, device=z.device)
        others[torch.arange(n, device=z.device), own_columns] = False
        positive = (keys.unsqueeze(1) == all_keys.unsqueeze(0)) & others

        losses = self._anchor_losses(z, all_z, positive, others, intensities, all_intensities)
        valid = idist.all_reduce(losses.numel())  # anchors with a positive on all ranks
        if losses.numel() == 0:  # keep this rank in the gather's backward collective
            return padded_z.sum() * 0.0
        return losses.sum() * (len(sizes) / valid)

    def _anchor_losses(
        self,
        anchors: torch.Tensor,
        contrast: torch.Tensor,
        positive: torch.Tensor,
        others: torch.Tensor,
        anchor_intensities: torch.Tensor | None,
        contrast_intensities: torch.Tensor | None,
    ) -> torch.Tensor:
        """``L_i`` for every anchor that has a positive.

        Args:
            anchors: ``(A, D)`` normalised anchor embeddings.
            contrast: ``(C, D)`` normalised embeddings of the contrast set.
            positive: ``(A, C)`` bool, the positives of every anchor.
            others: ``(A, C)`` bool, the contrast set of every anchor (not itself, no padding).
            anchor_intensities: ``(A,)`` or None (no weighting).
            contrast_intensities: ``(C,)`` or None.

        Returns:
            ``(A',)`` losses of the A' anchors with at least one positive.
        """
        has_positive = positive.any(dim=1)
        anchors, positive, others = anchors[has_positive], positive[has_positive], others[has_positive]
        # einsum indices: a = anchor, c = contrast sample, d = embedding dimension
        similarity = torch.einsum("ad,cd->ac", anchors, contrast)
        if self.intensity_weighting:
            weights = _intensity_weights(anchor_intensities[has_positive], contrast_intensities)
            weights = torch.where(positive, torch.ones_like(weights), weights)
            denominator_similarity = weights * similarity + (1.0 - weights)
        else:
            denominator_similarity = similarity
        # torch.logsumexp subtracts the row max before exponentiating; excluded samples are -inf (exp -> 0)
        log_partition = torch.logsumexp(
            (denominator_similarity / self.temperature).masked_fill(~others, float("-inf")), dim=1
        )
        positive_weight = positive.to(similarity.dtype)
        mean_positive_logit = (similarity * positive_weight).sum(dim=1) / positive_weight.sum(dim=1) / self.temperature
        return -(self.temperature / self.base_temperature) * (mean_positive_logit - log_partition)

    def _check_inputs(
        self, embeddings: torch.Tensor, labels: torch.Tensor, intensities: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}.")
        if not embeddings.is_floating_point():
            raise ValueError(f"embeddings must be floating point, got dtype {embeddings.dtype}.")
        n = embeddings.shape[0]
        _check_vector("labels", labels, n, embeddings.shape)
        if not self.intensity_weighting:
            return labels, None
        if intensities is None:
            raise ValueError("intensity_weighting=True needs intensities, got None.")
        _check_vector("intensities", intensities, n, embeddings.shape)
        return labels, intensities.to(embeddings.dtype).detach()


def _intensity_weights(anchor_intensities: torch.Tensor, contrast_intensities: torch.Tensor) -> torch.Tensor:
    """``(A, C)`` weights ``max(0, 1 - |mu_a - mu_c|)``."""
    difference = (anchor_intensities.unsqueeze(1) - contrast_intensities.unsqueeze(0)).abs()
    return (1.0 - difference).clamp(min=0.0)


def _check_vector(name: str, value: torch.Tensor, n: int, embeddings_shape: torch.Size) -> None:
    if not isinstance(value, torch.Tensor) or value.ndim != 1 or value.shape[0] != n:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be (N,) matching embeddings {tuple(embeddings_shape)}, got {shape}.")


def _positive_float(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def _boolean(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}.")
    return value
