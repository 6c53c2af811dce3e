"""``ConfusionMatrixWriter``: the voxel confusion matrix of an evaluation, as CSV and PNG.

A Dice of 0 for an organ says nothing about *why*: the organ may be missed (its voxels predicted as background) or
swapped (predicted as another organ, e.g. the other kidney). The confusion matrix of voxel counts over all evaluated
cases tells the two apart.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from ignite.metrics import ConfusionMatrix
from monai.handlers import from_engine
from monai.networks.utils import one_hot

from ..atomic_io import atomic_write

__all__ = ["ConfusionMatrixWriter", "plot_confusion_matrix"]


def plot_confusion_matrix(
    counts: torch.Tensor, class_names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Write a PNG of ``counts``: each row normalised to the share of that true class's voxels, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.as_tensor(counts, dtype=torch.float64)
    shares = counts / counts.sum(1, keepdim=True).clamp_min(1)
    size = 1.0 + 0.55 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    shown = axes.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(class_names)), class_names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if counts[i, j] > 0:
                colour = "white" if shares[i, j] > 0.5 else "black"
                axes.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=6, color=colour)
    axes.set_title(title or "voxel confusion (row share of the true class)", fontsize=9)
    figure.colorbar(shown, ax=axes, fraction=0.046)
    figure.tight_layout()
    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)


class ConfusionMatrixWriter:
    """Accumulate the voxel confusion matrix over an evaluator's cases; write ``<prefix>.csv`` and ``<prefix>.png``.

    The counting is ignite's ``ConfusionMatrix`` (summed over the ranks of a distributed run). The CSV has one row
    per true class and one column per predicted class (voxel counts, class names as headers); the PNG shows each row
    as shares of that class's voxels.

    Args:
        output_dir: where the files go.
        class_names: all class names, background first (``len(class_names)`` classes).
        output_transform: maps ``engine.state.output`` to ``(preds, labels)``, lists of per-case tensors, each
            ``(C, *spatial)`` one-hot or scores or ``(1, *spatial)`` class ids (MONAI's decollated output:
            ``from_engine(["pred", "label"])``, the default).
        prefix: the file name without suffix.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        output_transform: Callable[[Any], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]] | None = None,
        prefix: str = "confusion_matrix",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.prefix = prefix
        self.metric = ConfusionMatrix(num_classes=len(self.class_names))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.metric.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _accumulate(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        for pred, label in zip(preds, labels):
            scores, truth = (self._one_hot(x.detach()) for x in (pred, label))
            if scores.shape != truth.shape:
                raise ValueError(f"pred and label differ in shape: {tuple(pred.shape)} vs {tuple(label.shape)}.")
            self.metric.update((scores[None], truth.argmax(0)[None]))

    def _one_hot(self, x: torch.Tensor) -> torch.Tensor:
        """``(C, *spatial)`` as given, or class ids ``(1, *spatial)`` one-hot encoded."""
        return one_hot(x, len(self.class_names), dim=0) if x.shape[0] == 1 and len(self.class_names) > 1 else x

    def write(self, engine: Engine | None = None) -> None:
        """Write the CSV and the PNG of the counts so far (summed over the ranks of a distributed run, by rank 0)."""
        try:
            counts = self.metric.compute().cpu()  # an all-reduce under torch.distributed: every rank takes part
        except NotComputableError:  # no case evaluated
            counts = torch.zeros(len(self.class_names), len(self.class_names), dtype=torch.long)
        if idist.get_rank() != 0:
            return
        with atomic_write(self.output_dir / f"{self.prefix}.csv") as tmp:
            with open(tmp, "w", newline="") as stream:
                writer = csv.writer(stream)
                writer.writerow(["true \\ predicted", *self.class_names])
                for name, row in zip(self.class_names, counts.tolist()):
                    writer.writerow([name, *row])
        plot_confusion_matrix(counts, self.class_names, self.output_dir / f"{self.prefix}.png")
