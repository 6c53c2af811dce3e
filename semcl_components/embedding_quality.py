"""Embedding quality: how well an encoder's organ features separate organs, measured on whole labelled volumes.

Contrastive pretraining shapes the encoder's features; what fine-tuning inherits is the encoder, not the projection
head. The organ feature measured here is therefore the encoder's deepest feature map (layer-normalised, as in
:class:`~semcl_components.networks.ObjectEmbeddingModel`) averaged inside each organ's *exact* mask, before any
projection (``ObjectEmbeddingModel.embed_objects``), whatever masks the pretraining itself used:

- :func:`organ_features`: ``(N, F)`` features and ``(N,)`` organ ids of every organ of some labelled volumes;
- :func:`embedding_quality`: k-nearest-neighbour organ accuracy of held-out subjects' organs against a reference
  pool (the pretraining volumes), and the silhouette score of each set by organ (cosine distance);
- :func:`plot_embedding_projections`: PCA plots coloured by organ, one panel per encoder, side by side.

:class:`~semcl_components.bundle_runtime.handlers.EmbeddingQualityHandler` runs them during pretraining; ``scripts/benchmark.py``
runs them after it, for every pretraining arm alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from .bundle_runtime.atomic_io import atomic_write
from .metrics import knn_accuracy, pca_projection, silhouette_score
from .transforms import GenerateAttentionMasks

__all__ = [
    "EMBEDDING_QUALITY_KEYS",
    "embedding_quality",
    "organ_features",
    "plot_embedding_projections",
    "projection_panel",
]

#: The entries of :func:`embedding_quality`'s result.
EMBEDDING_QUALITY_KEYS = ("knn_accuracy", "silhouette_held_out", "silhouette_reference")


@torch.no_grad()
def organ_features(
    model: Any,
    items: Iterable[Mapping[str, Any]],
    classes: Sequence[int],
    min_voxels: int = 1,
    image_key: str = "image",
    label_key: str = "label",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The organ features of labelled volumes, one row per organ present in a volume.

    Args:
        model: an :class:`~semcl_components.networks.ObjectEmbeddingModel` (its ``embed_objects`` is used, in
            ``eval`` mode; the caller restores ``train`` mode if needed).
        items: dictionaries with an image ``(C, *S)`` and a label map ``(1, *S)`` each (one volume at a time,
            already loaded and resampled).
        classes: the organ ids to embed; an organ with fewer than ``min_voxels`` voxels in a volume is skipped.
        min_voxels: smallest organ (in voxels) that is embedded.
        image_key: the image's key in each item.
        label_key: the label map's key in each item.

    Returns:
        ``(N, F)`` features on the CPU and ``(N,)`` organ ids, ``N`` the number of organs over all volumes.
    """
    masks_of = GenerateAttentionMasks(classes=list(classes), min_voxels=min_voxels)
    device = next(model.parameters()).device
    features, labels = [], []
    for item in items:
        masks, class_ids = masks_of(item[label_key])
        image = torch.as_tensor(item[image_key]).to(device)[None]
        features.append(model.embed_objects(image, [torch.as_tensor(masks).to(device)]).float().cpu())
        labels.append(torch.as_tensor(class_ids).long().cpu())
    if not features:
        return torch.zeros(0, getattr(model, "feature_channels", 0)), torch.zeros(0, dtype=torch.long)
    return torch.cat(features), torch.cat(labels)


def embedding_quality(
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    held_out: torch.Tensor,
    held_out_labels: torch.Tensor,
    k: int = 5,
) -> dict[str, float]:
    """Organ separation of ``(R, F)`` reference and ``(Q, F)`` held-out features with ``(R,)``/``(Q,)`` organ ids.

    Returns:
        ``knn_accuracy``: share of held-out organs whose ``k`` nearest reference features (cosine) vote for their
        own organ; ``silhouette_held_out`` and ``silhouette_reference``: the silhouette score of each set by organ
        (1: tight, separate organ clusters; about 0: mixed). NaN where a set has too few organs to tell.
    """
    return {
        "knn_accuracy": knn_accuracy(reference, reference_labels, held_out, held_out_labels, k=k),
        "silhouette_held_out": silhouette_score(held_out, held_out_labels),
        "silhouette_reference": silhouette_score(reference, reference_labels),
    }


def plot_embedding_projections(
    panels: Mapping[str, tuple[Any, Any, Any]],
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    title: str = "PCA of organ features: dots = reference (pretraining) volumes, crosses = held-out subjects",
) -> None:
    """Write a PNG with one PCA scatter per panel, side by side, coloured by organ.

    Args:
        panels: panel title -> ``(xy, labels, held_out)``: ``(N, 2)`` projected coordinates (e.g.
            :func:`~semcl_components.metrics.pca_projection` of reference and held-out features together), ``(N,)``
            organ ids, ``(N,)`` booleans marking held-out organs.
        path: the PNG file (written atomically).
        class_names: names of the organ ids (index = id) for the legend; ids are shown without them.
        title: the figure's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.2 * max(len(panels), 1), 3.4), squeeze=False)
    for axis, (name, (xy, labels, held_out)) in zip(axes[0], panels.items()):
        xy, labels, held_out = (
            np.asarray(xy, dtype=float).reshape(-1, 2),
            np.asarray(labels),
            np.asarray(held_out, bool),
        )
        for label in np.unique(labels):
            chosen = labels == label
            legend = class_names[label] if class_names is not None and label < len(class_names) else str(label)
            colour = f"C{int(label) % 10}"
            axis.scatter(xy[chosen & ~held_out, 0], xy[chosen & ~held_out, 1], s=10, color=colour, label=legend)
            axis.scatter(xy[chosen & held_out, 0], xy[chosen & held_out, 1], s=28, marker="x", color=colour)
        axis.set_title(name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][0].legend(title="organ" if class_names is not None else "organ id", fontsize=6, title_fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)


def projection_panel(
    reference: torch.Tensor, reference_labels: torch.Tensor, held_out: torch.Tensor, held_out_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One panel of :func:`plot_embedding_projections`: the PCA of both sets together, their ids, held-out flags."""
    xy = pca_projection(torch.cat([reference, held_out]))
    labels = torch.cat([reference_labels, held_out_labels])
    flags = torch.cat(
        [torch.zeros(len(reference_labels), dtype=torch.bool), torch.ones(len(held_out_labels), dtype=torch.bool)]
    )
    return xy, labels, flags
