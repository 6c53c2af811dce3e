"""The report's tables: Dice per arm, comparisons, per organ, probe, pretraining, cost, embeddings, provenance."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from semcl_tools.repository import ROOT

from ..statistics import hierarchical_bootstrap
from . import plots as plotting
from .comparison import compare, dice_grid, format_difference, format_mean_dice, format_p, is_method
from .records import validation_points


def headline(finetunes, arms, settings, bootstrap=hierarchical_bootstrap,
             interval: str = "95% CI over seeds and test cases") -> list[str]:
    """Mean test Dice per arm (rows) and setting (columns), with the ``bootstrap``'s ``interval``."""
    lines = [f"## Mean test Dice per arm ({interval})", ""]
    lines.append("| arm | " + " | ".join(settings) + " |")
    lines.append("| --- |" + " --- |" * len(settings))
    for arm in arms:
        cells = []
        for setting in settings:
            runs = finetunes.get((arm, setting, False), {})
            cells.append(f"{format_mean_dice(runs, bootstrap)} (n={len(runs)})" if runs else "-")
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return lines + [""]


def comparisons(finetunes, arms, settings) -> list[str]:
    lines = ["## Method against each baseline (paired by seed)", "",
             "| setting | method | baseline | difference [95% CI] | Wilcoxon p | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for setting in settings:
        for method in [a for a in arms if is_method(a)]:
            for baseline in [a for a in arms if not is_method(a)]:
                comparison = compare(finetunes, method, baseline, setting)
                if comparison is not None:
                    difference, p, n = comparison
                    lines.append(f"| {setting} | `{method}` | `{baseline}` | {format_difference(difference, n)} | "
                                 f"{format_p(p)} | {n} |")
    return lines + [""]


def per_organ(finetunes, arms, settings) -> list[str]:
    lines = []
    for setting in settings:
        runs_by_arm = {arm: finetunes.get((arm, setting, False), {}) for arm in arms}
        example = next((r for runs in runs_by_arm.values() for r in runs.values()), None)
        if example is None:
            continue
        organs = example["test"]["classes"]
        lines += [f"## Per-organ test Dice, {setting} (mean over seeds and cases)", "",
                  "| arm | " + " | ".join(organs) + " |", "| --- |" + " --- |" * len(organs)]
        for arm, runs in runs_by_arm.items():
            if runs:
                cells = [f"{np.nanmean(dice_grid(runs, sorted(runs), organ)):.3f}" for organ in range(len(organs))]
                lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def probe(finetunes, size) -> list[str]:
    probes = {key[0]: runs for key, runs in finetunes.items() if key[2]}
    if not probes:
        return []
    lines = [f"## Frozen-encoder probe ({size.probe_setting}: only the decoder trains)", "",
             "| arm | test Dice [95% CI] | seeds |", "| --- | --- | --- |"]
    for arm, runs in probes.items():
        lines.append(f"| `{arm}` | {format_mean_dice(runs)} | {len(runs)} |")
    return lines + [""]


def pretraining(pretrains, arms) -> list[str]:
    """How each contrastive pretraining ended: the collapse monitors of its last epoch (mean over seeds)."""
    contrastive = [a for a in arms if any("final_negative_cosine" in r["summary"] for r in pretrains[a].values())]
    if not contrastive:
        return []
    lines = ["## Contrastive pretraining at its last epoch (collapse monitors, mean over seeds)", "",
             "A negative cosine near the positive one (both near 1) and an embedding spread near 0 mean the embeddings "
             "collapsed onto one point: that arm learned nothing from its pretext task.", "",
             "| arm | loss | positive cosine | negative cosine | effective rank | embedding spread | collapsed seeds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm in contrastive:
        runs = [r["summary"] for r in pretrains[arm].values()]
        mean = {k: np.mean([r[f"final_{k}"] for r in runs]) for k in
                ("loss", "positive_cosine", "negative_cosine", "effective_rank", "embedding_std")}
        collapsed = sum(r["final_negative_cosine"] > 0.99 for r in runs)
        lines.append(f"| `{arm}` | {mean['loss']:.3f} | {mean['positive_cosine']:.3f} | {mean['negative_cosine']:.3f} | "
                     f"{mean['effective_rank']:.2f} | {mean['embedding_std']:.4f} | {collapsed} of {len(runs)} |")
    return lines + [""]


def cost(finetunes, pretrains, arms) -> list[str]:
    lines = ["## Cost per run (wall time and peak memory of each process; one CPU thread per run)", "",
             "| arm | pretraining s | fine-tuning s (mean) | fine-tuning epochs (mean) | peak memory MB (max) |",
             "| --- | --- | --- | --- | --- |"]
    for arm in arms:
        pre = [r["cost"]["seconds"] for r in pretrains.get(arm, {}).values()]
        fine = [r for (a, _, probe), runs in finetunes.items() if a == arm and not probe for r in runs.values()]
        memory = [r["cost"]["peak_memory_mb"] for r in pretrains.get(arm, {}).values()]
        memory += [r["cost"]["train"]["peak_memory_mb"] for r in fine]
        lines.append(
            f"| `{arm}` | {np.mean(pre):.0f} | " if pre else f"| `{arm}` | - | "
        )
        lines[-1] += (f"{np.mean([r['cost']['train']['seconds'] for r in fine]):.0f} | "
                      f"{np.mean([r['epochs'] for r in fine]):.0f} | {max(memory):.0f} |") if fine else "- | - | - |"
    return lines + [""] + step_cost(STEP_BENCHMARK)


STEP_BENCHMARK = ROOT / "docs" / "results" / "step_benchmark.json"
"""The step micro-benchmark's committed result (``scripts/benchmark_step.py``)."""


def step_cost(path: Path) -> list[str]:
    """The method's two embedding modes per training step, from the step micro-benchmark's committed result."""
    if not path.is_file():
        return []
    step = json.loads(path.read_text())
    arms, settings, machine = step["arms"], step["settings"], step["environment"]
    return [f"Pretraining step of the method's embedding modes (`scripts/benchmark_step.py`, `{path.name}`; one process, "
            f"arms interleaved; {settings['views']} views of {settings['size']}^3 crops holding "
            f"{step['objects']['total']} organs, SegResNet width {settings['init_filters']}, {settings['threads']} threads, "
            f"{machine['cpu_model']}): `pool` {arms['pool']['median_s']:.2f} s, `channel` {arms['channel']['median_s']:.2f} s "
            f"median per step, a `channel`/`pool` ratio of {arms['channel']['median_s'] / arms['pool']['median_s']:.1f}; "
            f"a plain segmentation step {arms['seg']['median_s']:.2f} s.", ""]


def embedding(embeddings, arms, plots: Path, report: Path) -> list[str]:
    """kNN organ accuracy and silhouettes of each arm's encoder features, with a PCA plot of one seed per arm."""
    if not arms:
        return []
    lines = ["## Embedding quality (encoder features of each organ; held-out test subjects vs the pretraining pool)", "",
             "Object feature: the layer-normalised deepest encoder features averaged inside the organ's mask, before any "
             "projection head. kNN: share of held-out organs whose 5 nearest pretraining-pool organs (cosine) vote "
             "for the right organ. Silhouette by organ (cosine), on held-out and on pool organs. Mean (min-max) over "
             "seeds.", "",
             "| arm | kNN organ accuracy | silhouette, held-out | silhouette, pool | seeds |", "| --- | --- | --- | --- | --- |"]

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    for arm in arms:
        runs = list(embeddings[arm].values())
        lines.append(f"| `{arm}` | {cell([r['knn_accuracy'] for r in runs])} | {cell([r['silhouette_test'] for r in runs])} "
                     f"| {cell([r['silhouette_pretrain'] for r in runs])} | {len(runs)} |")
    panels = {}
    for arm in arms:
        seed = min(embeddings[arm])
        pca = embeddings[arm][seed]["pca"]
        panels[f"{arm} (seed {seed})"] = (pca["xy"], pca["labels"], pca["held_out"])
    plotting.plot_embedding_pca(panels, plots / "embedding_pca.png")
    return lines + ["", f"![embedding PCA]({os.path.relpath(plots, report.parent)}/embedding_pca.png)", ""]


def embedding_during_pretraining(pretrains, arms, plots: Path, report: Path) -> list[str]:
    """kNN organ accuracy of held-out subjects against the pretraining epoch (EmbeddingQualityHandler's records)."""
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for arm in arms:
        for run in pretrains[arm].values():
            points = [(h["epoch"], h["metrics"]["embedding_knn_accuracy"]) for h in run.get("history", [])
                      if "embedding_knn_accuracy" in h.get("metrics", {})]
            if points:
                curves.setdefault(arm, []).append(points)
    if not curves:
        return []
    lines = ["## Embedding quality during pretraining (held-out validation subjects vs the pretraining pool)", "",
             "Measured by the pretraining workflow itself (`EmbeddingQualityHandler`, every "
             "`embedding_quality_interval` epochs; runs of older code did not record it). Mean over seeds.", "",
             "| arm | kNN organ accuracy, first measurement | kNN, last | silhouette (held-out), last | seeds |",
             "| --- | --- | --- | --- | --- |"]
    for arm, runs in curves.items():
        last = [run["history"][-1]["metrics"] for run in pretrains[arm].values()
                if "embedding_knn_accuracy" in run.get("history", [{}])[-1].get("metrics", {})]
        silhouette = np.nanmean([m["embedding_silhouette_held_out"] for m in last]) if last else float("nan")
        lines.append(f"| `{arm}` (epoch {runs[0][0][0]} to {runs[0][-1][0]}) | "
                     f"{np.mean([r[0][1] for r in runs]):.3f} | {np.mean([r[-1][1] for r in runs]):.3f} | "
                     f"{silhouette:.3f} | {len(runs)} |")
    plotting.plot_knn_during_pretraining(curves, plots / "embedding_knn_during_pretraining.png")
    relative = os.path.relpath(plots, report.parent)
    return lines + ["", f"![kNN during pretraining]({relative}/embedding_knn_during_pretraining.png)", ""]


def steps_to_scratch(finetunes, arms, settings) -> list[str]:
    """Fine-tuning steps each pretrained arm needs to reach the best validation Dice of scratch, paired by seed."""
    lines = ["## Fine-tuning steps to reach scratch's validation Dice (paired by seed)", "",
             "For each seed: the first validation at which the pretrained arm's Dice reaches the best validation Dice "
             "that `scratch` reached with that seed in its whole run; median steps over the seeds where it does, and "
             "scratch's own median steps to its best.", "",
             "| arm | " + " | ".join(settings) + " |", "| --- |" + " --- |" * len(settings)]
    rows = {arm: [] for arm in arms}
    for setting in settings:
        scratch = finetunes.get(("scratch", setting, False), {})
        for arm in arms:
            runs = finetunes.get((arm, setting, False), {})
            reached, paired = [], 0
            for seed, run in runs.items():
                theirs, ours = validation_points(scratch[seed]) if seed in scratch else [], validation_points(run)
                if not theirs or not ours:
                    continue
                paired += 1
                target = max(p.dice for p in theirs if p.dice is not None)
                steps = [p.step for p in ours if p.dice is not None and p.dice >= target]
                if steps:
                    reached.append(steps[0])
            cell = f"{np.median(reached):.0f} ({len(reached)} of {paired} seeds)" if reached else f"never (0 of {paired})"
            rows[arm].append(cell if paired else "-")
    return lines + [f"| `{arm}` | " + " | ".join(cells) + " |" for arm, cells in rows.items()] + [""]


def provenance(results: dict, command: str, size) -> list[str]:
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, torch {r['machine']['torch']})"
                       for r in results.values()})
    dates = sorted(r["finished"] for r in results.values())
    codes = sorted({r.get("code", "8c11f62 (not recorded; the first results of 2026-11-26)") for r in results.values()})
    lines = ["## How this was made", "",
             f"- Command: `{command}` (resumable: rerun it to complete the missing runs; `--report-only` rewrites this file).",
             "- Result files: one JSON per run; this report is generated from them alone.",
             f"- Machines: {'; '.join(machines) if machines else 'none yet'}.",
             f"- Code: {', '.join(codes) if codes else '-'}.",
             f"- Runs finished between {dates[0]} and {dates[-1]}." if dates else "- No run finished yet.",
             f"- Report written {time.strftime('%Y-%m-%d %H:%M')}.",
             f"- Size `{size.name}`: data {json.dumps(size.data)}, network {json.dumps(size.network)}, "
             f"pretraining {json.dumps(size.pretrain)}, fine-tuning {json.dumps(size.finetune)}."]
    return lines
