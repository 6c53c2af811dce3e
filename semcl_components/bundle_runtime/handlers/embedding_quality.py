"""``EmbeddingQualityHandler``: organ separation of the encoder's features, measured during pretraining."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from ...embedding_quality import (
    EMBEDDING_QUALITY_KEYS,
    embedding_quality,
    organ_features,
    plot_embedding_projections,
    projection_panel,
)

__all__ = ["EmbeddingQualityHandler"]


class EmbeddingQualityHandler:
    """Every ``interval`` epochs (and after the last), measure how well the encoder's features separate organs.

    The organ features of ``reference`` volumes (the pretraining pool) and of ``held_out`` volumes (subjects the
    pretraining never sees, e.g. the validation split) are computed with the network being trained
    (:func:`~semcl_components.embedding_quality.organ_features`: encoder features averaged inside each organ's exact
    mask, before the projection head). The results of
    :func:`~semcl_components.embedding_quality.embedding_quality` are put into the trainer's ``state.metrics`` as
    ``embedding_knn_accuracy``, ``embedding_silhouette_held_out`` and ``embedding_silhouette_reference`` for that
    epoch only (removed when the next epoch starts), so that handlers attached after this one record them:
    :class:`~semcl_components.bundle_runtime.handlers.RunSummaryWriter` (``history[i]["metrics"]``) and MONAI's
    ``TensorBoardStatsHandler`` (epoch-level scalars). With ``plot_file``, a PCA plot of both sets coloured by organ
    is written there each time. Only rank 0 of a distributed run measures.

    Cost: one encoder pass per volume (per organ in ``channel`` mode) at each measurement, whole volumes at once.

    Args:
        network: the :class:`~semcl_components.networks.ObjectEmbeddingModel` being trained (or its DDP wrapper).
        reference: the reference volumes: dictionaries with an image ``(C, *S)`` and a label map ``(1, *S)``,
            loaded and resampled (e.g. a MONAI ``Dataset`` with the workflow's deterministic transforms).
        held_out: the held-out volumes, as ``reference``.
        classes: the organ ids to embed.
        interval: measure every ``interval`` epochs; ``0`` switches the handler off.
        min_voxels: an organ with fewer voxels in a volume is skipped.
        k: neighbours of the k-nearest-neighbour organ accuracy.
        class_names: organ names for the plot's legend (index = organ id).
        plot_file: the PCA plot's PNG file, overwritten at each measurement (``None``: no plot).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        reference: Iterable[Mapping[str, Any]],
        held_out: Iterable[Mapping[str, Any]],
        classes: Sequence[int],
        interval: int = 5,
        min_voxels: int = 1,
        k: int = 5,
        class_names: Sequence[str] | None = None,
        plot_file: str | os.PathLike | None = None,
    ) -> None:
        if int(interval) != interval or interval < 0:
            raise ValueError(f"embedding quality interval must be an integer >= 0 (0: off), got {interval!r}.")
        self.network = network
        self.reference = reference
        self.held_out = held_out
        self.classes = list(classes)
        self.interval = int(interval)
        self.min_voxels = int(min_voxels)
        self.k = int(k)
        self.class_names = list(class_names) if class_names is not None else None
        self.plot_file = Path(plot_file) if plot_file is not None else None
        self.history: list[dict[str, float]] = []
        self.logger = logging.getLogger("semcl_components.embedding_quality")

    def attach(self, engine: Engine) -> None:
        if self.interval == 0:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._forget)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._measure_if_due)

    @staticmethod
    def _keys() -> list[str]:
        return [f"embedding_{key}" for key in EMBEDDING_QUALITY_KEYS]

    def _forget(self, engine: Engine) -> None:
        for key in self._keys():
            engine.state.metrics.pop(key, None)

    def _measure_if_due(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch % self.interval == 0 or epoch == engine.state.max_epochs:
            self(engine)

    def __call__(self, engine: Engine) -> None:
        """Measure now and put the results into ``engine.state.metrics``."""
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        model = getattr(self.network, "module", self.network)
        was_training = model.training
        model.eval()
        try:
            reference, reference_labels = organ_features(model, self.reference, self.classes, self.min_voxels)
            held_out, held_out_labels = organ_features(model, self.held_out, self.classes, self.min_voxels)
        finally:
            model.train(was_training)
        quality = embedding_quality(reference, reference_labels, held_out, held_out_labels, k=self.k)
        results = {f"embedding_{key}": value for key, value in quality.items()}
        engine.state.metrics.update(results)
        self.history.append({"epoch": engine.state.epoch, **results})
        shown = ", ".join(f"{key} {value:.3f}" for key, value in quality.items() if not math.isnan(value))
        self.logger.info(
            f"Epoch[{engine.state.epoch}] embedding quality ({len(reference_labels)} reference and "
            f"{len(held_out_labels)} held-out organs): {shown or 'too few organs to measure'}"
        )
        if self.plot_file is not None and len(reference_labels) + len(held_out_labels) >= 2:
            panel = projection_panel(reference, reference_labels, held_out, held_out_labels)
            plot_embedding_projections(
                {f"epoch {engine.state.epoch}: kNN {quality['knn_accuracy']:.2f}": panel},
                self.plot_file,
                class_names=self.class_names,
            )
