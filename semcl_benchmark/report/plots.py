"""Render: the report's plots (PNG, written atomically): Dice against labelled volumes, validation curves, confusion
matrices, the embeddings' PCA and kNN accuracy during pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from semcl_components.bundle_runtime.atomic_io import atomic_write
from semcl_components.bundle_runtime.handlers.confusion_matrix import plot_confusion_matrix
from semcl_components.embedding_quality import plot_embedding_projections

from ..run_records import RunResult
from .load import runs_of

__all__ = ["write_embedding_plots", "write_plots"]


def _line_plot(path: Path, series: dict[str, tuple], xlabel: str, ylabel: str, marker: str | None = None,
               xticks=None) -> None:
    """One line per ``series[label] = (x, y[, (low, high) error bars])``, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4))
    for label, (x, y, *errors) in series.items():
        if errors:
            axes.errorbar(x, y, yerr=np.asarray(errors[0]).T, marker="o", capsize=3, label=label)
        else:
            axes.plot(x, y, marker=marker, label=label)
    axes.set_xlabel(xlabel)
    if xticks is not None:
        axes.set_xticks(xticks)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)


def _mean_curve(curves: list[list[tuple[float, float]]]) -> tuple[list[float], np.ndarray]:
    """The x of the first curve and the mean y over the curves (``[(x, y), ...]`` each, NaN: not measured), cut to
    the shortest."""
    n = min(map(len, curves))
    return [x for x, _ in curves[0][:n]], np.nanmean([[y for _, y in c[:n]] for c in curves], axis=0)


def write_plots(runs: pd.DataFrame, headline: dict, arms, settings, plots: Path) -> list[tuple[str, str]]:
    """Dice against labelled volumes (``headline``: :func:`~.tables.headline` over ``settings``), validation curves
    per setting, one confusion matrix per arm (its first seed in its first setting): ``(title, file)`` of each plot
    written into ``plots``."""
    if not runs.stage.isin(("finetune", "atlas")).any():
        return []
    plots.mkdir(parents=True, exist_ok=True)
    volumes = {s: max(len(c) for c in g.labelled if c is not None) for s, g in runs.groupby("setting")
               if s in settings and g.labelled.notna().any()}
    series = {}
    for arm in arms:
        cells = dict(zip(settings, headline[arm]))
        if points := [(volumes[s], cells[s].estimate) for s in volumes if cells[s]]:
            series[arm] = ([v for v, _ in points], [e.mean for _, e in points],
                           [(e.mean - e.low, e.high - e.mean) for _, e in points])
    _line_plot(plots / "dice_vs_labelled_volumes.png", series, "labelled volumes", "test Dice (mean, 95% CI)",
               xticks=sorted(set(volumes.values())))
    written = [("Dice vs labelled volumes", "dice_vs_labelled_volumes.png")]
    for setting in settings:
        series = {}
        for arm in arms:
            validations = [RunResult("finetune", r).validation for r in runs_of(runs, arm, setting).values()]
            curves = [[(p.step, np.nan if p.dice is None else p.dice) for p in points]
                      for points in validations if points]
            if curves:
                series[f"{arm} ({len(curves)} seeds)"] = _mean_curve(curves)
        if series:  # e.g. only the atlases have finished in this setting: nothing validates
            _line_plot(plots / f"validation_curve_{setting}.png", series, "fine-tuning steps",
                       "validation Dice (mean over seeds)")
            written.append((f"validation Dice, {setting}", f"validation_curve_{setting}.png"))
    for arm in arms:
        found = next(((s, r) for s in settings if (r := runs_of(runs, arm, s)) and r[min(r)].get("confusion_matrix")),
                     None)
        if found:
            (setting, by_seed), seed = found, min(found[1])
            matrix, name = by_seed[seed]["confusion_matrix"], f"confusion_{arm}_{setting}_seed{seed}.png"
            plot_confusion_matrix(np.array(matrix["counts"]), matrix["classes"], plots / name,
                                  title=f"{arm}, {setting}, seed {seed}")
            written.append((f"confusion {arm}", name))
    return written


def write_embedding_plots(runs: pd.DataFrame, embedding_rows, knn_curves, plots: Path) -> None:
    """The PCA of organ features (the first seed of each arm with embedding runs) and the mean kNN organ accuracy of
    held-out subjects against the pretraining epoch (``knn_curves[arm]``: one ``[(epoch, accuracy), ...]`` per seed)."""
    panels = {}
    for arm, _, _ in embedding_rows:
        found = runs_of(runs, arm, stage="embedding")
        pca = found[min(found)]["pca"]
        panels[f"{arm} (seed {min(found)})"] = (pca["xy"], pca["labels"], pca["held_out"])
    if panels:
        plot_embedding_projections(panels, plots / "embedding_pca.png",
                                   title="PCA of organ features: dots = pretraining pool, crosses = held-out subjects")
    if knn_curves:
        series = {f"{arm} ({len(curves)} seeds)": _mean_curve(curves) for arm, curves in knn_curves.items()}
        _line_plot(plots / "embedding_knn_during_pretraining.png", series, "pretraining epoch",
                   "kNN organ accuracy, held-out subjects", marker="o")
