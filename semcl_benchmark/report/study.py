"""The shortcut study's table: each variant of the method beside scratch and the method's main arms, same seeds."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from .comparison import compare, format_difference, format_mean_dice, format_p

__all__ = ["study"]

STUDY_REFERENCES = ("scratch", "semcl_exact", "semcl_coarse")  # main arms the study's variants are read beside


def _variation(run: dict, size) -> str:
    """What a study arm changes, from its fine-tuning run's configuration: pretraining and fine-tuning settings."""
    config = run["config"]
    pretrain = config["pretrain"] or {}
    changes = [f"`{k}={json.dumps(v)}`" for k, v in pretrain.get("arm_settings", {}).items()
               if k not in ("mask_mode", "overlay") and v is not None]
    changes += [f"`{k}={json.dumps(v)}`" for k, v in config["finetune"].items() if size.finetune.get(k) != v]
    text = ", ".join(changes) or "-"
    if pretrain and pretrain.get("arm") != config["arm"]:
        text += f" (`{pretrain['arm']}`'s encoders)"
    return text


def _saturation(history: list[dict]) -> int | None:
    """The first pretraining epoch by which the loss made 90% of its whole drop (a pretext task saturating early)."""
    losses = [(h["epoch"], h["mean_loss"]) for h in history if h.get("mean_loss") is not None]
    if len(losses) < 2 or losses[0][1] <= losses[-1][1]:
        return None
    goal = losses[0][1] - 0.9 * (losses[0][1] - losses[-1][1])
    return next(epoch for epoch, loss in losses if loss <= goal)


def study(finetunes, pretrains, embeddings, size, planned: Sequence) -> list[str]:
    """The shortcut study: each variant of the method beside scratch and the method's main arms, same seeds."""
    if not size.study_arms:
        return []
    setting, seeds = size.study_setting, list(size.study_seeds)
    study = [a for a in size.study_arms if finetunes.get((a, setting, False))]
    planned_runs = [r for r in planned if r.config["stage"] == "finetune" and r.config["arm"] in size.study_arms]
    finished = sum(len(finetunes.get((a, setting, False), {})) for a in size.study_arms)
    heading = [f"## Shortcut study ({setting}, seeds {', '.join(map(str, seeds))})", ""]
    if not study:
        return heading + [f"No study run has finished yet ({len(planned_runs)} fine-tuning runs planned).", ""]
    lines = heading + [
        "What makes the pretext task stop saturating and the features transfer. Each variant changes one thing of "
        "`semcl_exact` (pretraining or fine-tuning) and is fine-tuned with the same seeds; differences are paired "
        "by seed with `scratch` and with `semcl_exact`. With 3 seeds the smallest two-sided Wilcoxon p is 0.25: "
        "this table points where to look, it proves nothing. Pretext loss: mean over seeds of the first and last "
        "epoch; saturation: the epoch by which the loss made 90% of its drop (median over seeds). Embedding "
        "quality: held-out test subjects against the pretraining pool (as above).", "",
        "| arm | change | pretext loss first -> last | saturation epoch | kNN organ accuracy | silhouette, held-out "
        "| test Dice [95% CI] | vs `scratch` [95% CI], p | vs `semcl_exact` [95% CI], p | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm in [a for a in STUDY_REFERENCES if finetunes.get((a, setting, False))] + study:
        runs = {s: r for s, r in finetunes[arm, setting, False].items() if s in seeds}
        if not runs:
            continue
        first = next(iter(runs.values()))
        source = (first["config"]["pretrain"] or {}).get("arm")
        pre = [pretrains[source][s] for s in runs if source and s in pretrains.get(source, {})]
        emb = [embeddings[source or arm][s] for s in runs if s in embeddings.get(source or arm, {})]
        history = [r.get("history", []) for r in pre]
        loss = (f"{np.mean([h[0]['mean_loss'] for h in history]):.2f} -> {np.mean([h[-1]['mean_loss'] for h in history]):.2f}"
                if history and all(history) else "-")
        saturation = [e for e in (_saturation(h) for h in history) if e is not None]
        cells = [f"`{arm}`", _variation(first, size) if arm in size.study_arms else "(main arm)", loss,
                 f"{np.median(saturation):.0f}" if saturation else "-",
                 f"{np.mean([r['knn_accuracy'] for r in emb]):.3f}" if emb else "-",
                 f"{np.mean([r['silhouette_test'] for r in emb]):.3f}" if emb else "-",
                 format_mean_dice(runs)]
        for baseline in ("scratch", "semcl_exact"):
            paired = {s: r for s, r in finetunes.get((baseline, setting, False), {}).items() if s in runs}
            compared = None if baseline == arm else compare({(arm, setting, False): runs,
                                                             (baseline, setting, False): paired}, arm, baseline, setting)
            cells.append("-" if compared is None else f"{format_difference(compared[0], compared[2])}, {format_p(compared[1])}")
        cells.append(str(len(runs)))
        lines.append("| " + " | ".join(cells) + " |")
    if finished < len(planned_runs):
        lines += ["", f"In progress: {finished} of {len(planned_runs)} planned study fine-tuning runs have finished "
                      "(the seeds column says which variants lack seeds)."]
    return lines + [""]
