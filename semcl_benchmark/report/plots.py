"""The report's plots (PNG, written atomically) and the section that links them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semcl_components.bundle_runtime.atomic_io import atomic_write
from semcl_components.embedding_quality import plot_embedding_projections
from semcl_components.bundle_runtime.handlers.confusion_matrix import plot_confusion_matrix

from .endpoints import estimate, grid
from .fields import validation_points
from .load import runs_of


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_embedding_pca(panels: dict, path: Path) -> None:
    """PCA of organ features per arm: ``panels[title] = (xy, labels, held_out)``."""
    plot_embedding_projections(panels, path,
                               title="PCA of organ features: dots = pretraining pool, crosses = held-out subjects")


def plot_knn_during_pretraining(curves: dict[str, list[list[tuple[int, float]]]], path: Path) -> None:
    """Mean over seeds of kNN organ accuracy against the pretraining epoch: ``curves[arm]`` = one curve per seed."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for arm, runs in curves.items():
        length = min(len(r) for r in runs)
        axes.plot([e for e, _ in runs[0][:length]], np.mean([[v for _, v in r[:length]] for r in runs], axis=0),
                  marker="o", label=f"{arm} ({len(runs)} seeds)")
    axes.set_xlabel("pretraining epoch")
    axes.set_ylabel("kNN organ accuracy, held-out subjects")
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def labelled_volumes(setting: str, runs) -> int | None:
    """How many volumes ``setting`` labels: its name's count (``finetune_4``), else the labelled cases its runs record
    (the upper bound, ``finetune_all``); ``None`` if neither says."""
    suffix = setting.rsplit("_", 1)[-1]
    if suffix.isdigit():
        return int(suffix)
    cases = [len(r["labelled_cases"]) for r in runs[runs.setting == setting].record if r.get("labelled_cases")]
    return max(cases) if cases else None


def write_plots(runs, arms, settings, plots: Path) -> list[tuple[str, str]]:
    """Dice against labelled volumes, validation curves per setting, one confusion matrix per arm: ``(title, file)``
    of each plot written into ``plots``."""
    if not runs.stage.isin(("finetune", "atlas")).any():
        return []
    plt = pyplot()
    plots.mkdir(parents=True, exist_ok=True)
    lines = []
    # Dice against the number of labelled volumes
    figure, axes = plt.subplots(figsize=(5.5, 4))
    volumes = {s: n for s in settings if (n := labelled_volumes(s, runs)) is not None}
    for arm in arms:
        points = [(volumes[s], estimate(grid(r, sorted(r)))) for s in settings
                  if s in volumes and (r := runs_of(runs, arm, s))]
        if points:
            x = [p[0] for p in points]
            y = np.array([[e.mean, e.mean - e.low, e.high - e.mean] for _, e in points])
            axes.errorbar(x, y[:, 0], yerr=y[:, 1:].T, marker="o", capsize=3, label=arm)
    axes.set_xlabel("labelled volumes")
    axes.set_ylabel("test Dice (mean, 95% CI)")
    axes.set_xticks(sorted(set(volumes.values())))
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, plots / "dice_vs_labelled_volumes.png")
    lines.append(("Dice vs labelled volumes", "dice_vs_labelled_volumes.png"))
    # validation Dice against fine-tuning steps
    for setting in settings:
        per_arm = {}
        for arm in arms:
            curves = [np.array([(p.step, np.nan if p.dice is None else p.dice) for p in points], dtype=np.float64)
                      for r in runs_of(runs, arm, setting).values() if (points := validation_points(r))]
            if curves:
                per_arm[arm] = curves
        if not per_arm:  # e.g. only the atlases have finished in this setting: nothing validates
            continue
        figure, axes = plt.subplots(figsize=(5.5, 4))
        for arm, curves in per_arm.items():
            length = min(len(c) for c in curves)
            mean = np.nanmean([c[:length, 1] for c in curves], axis=0)
            axes.plot(curves[0][:length, 0], mean, label=f"{arm} ({len(curves)} seeds)")
        axes.set_xlabel("fine-tuning steps")
        axes.set_ylabel("validation Dice (mean over seeds)")
        axes.legend(fontsize=8)
        figure.tight_layout()
        save_figure(figure, plots / f"validation_curve_{setting}.png")
        lines.append((f"validation Dice, {setting}", f"validation_curve_{setting}.png"))
    # confusion matrices of one run per arm
    for arm in arms:
        for setting in settings:
            found = runs_of(runs, arm, setting)
            if found and found[min(found)].get("confusion_matrix"):
                seed = min(found)
                matrix = found[seed]["confusion_matrix"]
                name = f"confusion_{arm}_{setting}_seed{seed}.png"
                plot_confusion_matrix(np.array(matrix["counts"]), matrix["classes"], plots / name,
                                      title=f"{arm}, {setting}, seed {seed}")
                lines.append((f"confusion {arm}", name))
                break
    return lines


def save_figure(figure, path: Path) -> None:
    """Write ``figure`` as a PNG (atomically) and close it."""
    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=100)
    pyplot().close(figure)


def write_embedding_plots(runs, embedding_rows, knn_curves, plots: Path) -> None:
    """The PCA of organ features (one seed per arm with embedding runs) and kNN accuracy during pretraining."""
    panels = {}
    for arm, _, _ in embedding_rows:
        found = runs_of(runs, arm, stage="embedding")
        pca = found[min(found)]["pca"]
        panels[f"{arm} (seed {min(found)})"] = (pca["xy"], pca["labels"], pca["held_out"])
    if panels:
        plot_embedding_pca(panels, plots / "embedding_pca.png")
    if knn_curves:
        plot_knn_during_pretraining(knn_curves, plots / "embedding_knn_during_pretraining.png")
