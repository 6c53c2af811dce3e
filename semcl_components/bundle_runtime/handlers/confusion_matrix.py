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

import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine

from ...distributed import all_reduce_sum, is_rank_zero
from ..atomic_io import atomic_write

__all__ = ["ConfusionMatrixWriter", "confusion_matrix", "plot_confusion_matrix"]


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Voxel counts ``(num_classes, num_classes)``: row = true class, column = predicted class.

    Args:
        pred: ``(C, *spatial)`` one-hot or scores (argmax over channels), or ``(1, *spatial)`` class ids.
        label: same forms as ``pred``.
        num_classes: number of classes including background.
    """

    def ids(x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        return (x.argmax(0) if x.shape[0] > 1 else x[0]).long().flatten()

    truth, predicted = ids(label), ids(pred)
    if truth.shape != predicted.shape:
        raise ValueError(f"pred and label differ in shape: {tuple(pred.shape)} vs {tuple(label.shape)}.")
    return torch.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


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

    The CSV has one row per true class and one column per predicted class (voxel counts, class names as headers);
    the PNG shows each row as shares of that class's voxels.

    Args:
        output_dir: where the files go.
        class_names: all class names, background first (``len(class_names)`` classes).
        output_transform: maps ``engine.state.output`` to ``(preds, labels)``, lists of per-case ``(C, *spatial)``
            tensors (MONAI's decollated output: ``from_engine(["pred", "label"])``, the default).
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
        self.counts = torch.zeros(len(self.class_names), len(self.class_names), dtype=torch.long)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self.counts.zero_()

    def _accumulate(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        for pred, label in zip(preds, labels):
            self.counts += confusion_matrix(pred.detach().cpu(), label.detach().cpu(), len(self.class_names))

    def write(self, engine: Engine | None = None) -> None:
        """Write the CSV and the PNG of the counts so far (summed over the ranks of a distributed run, by rank 0)."""
        self.counts = all_reduce_sum(self.counts)
        if not is_rank_zero():
            return
        with atomic_write(self.output_dir / f"{self.prefix}.csv") as tmp:
            with open(tmp, "w", newline="") as stream:
                writer = csv.writer(stream)
                writer.writerow(["true \\ predicted", *self.class_names])
                for name, row in zip(self.class_names, self.counts.tolist()):
                    writer.writerow([name, *row])
        plot_confusion_matrix(self.counts, self.class_names, self.output_dir / f"{self.prefix}.png")
