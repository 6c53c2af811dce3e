"""Analyse: the report's tables as values: Dice per arm, per organ, cost, embeddings, the shortcut study, provenance."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from semcl_tools.repository import ROOT

from ..statistics import Estimate, crossed_bootstrap
from .endpoints import compare, grid, organ_means
from .load import runs_of

__all__ = ["Cell", "StudyRow", "cost_rows", "embedding_rows", "headline", "knn_curves", "organ_tables",
           "step_cost", "study_rows", "unfinished"]

STEP_BENCHMARK = ROOT / "docs" / "results" / "step_benchmark.json"  # scripts/benchmark_step.py's committed result


#: A mean test Dice with its interval over ``seeds`` runs (no interval with one).
Cell = NamedTuple("Cell", [("estimate", Estimate), ("seeds", int)])
#: A shortcut-study variant (``change``: what it changes; ``None`` for a main arm) beside ``scratch`` and
#: ``semcl_exact`` on the same seeds: its pretext loss (first and last epoch, mean over seeds), kNN organ accuracy and
#: held-out silhouette, test Dice, and its paired comparison with each (:func:`~.endpoints.compare`).
StudyRow = NamedTuple("StudyRow", [("arm", str), ("change", str | None), ("loss", tuple | None),
                                   ("knn", float | None), ("silhouette", float | None), ("dice", Cell),
                                   ("against", list)])


def cell(found: dict[int, dict]) -> Cell | None:
    """The mean test Dice of ``{seed: record}`` with its crossed-bootstrap interval; ``None`` without runs."""
    return Cell(crossed_bootstrap(grid(found, sorted(found))), len(found)) if found else None


def headline(runs: pd.DataFrame, arms: Sequence[str], settings: Sequence[str]) -> dict[str, list[Cell | None]]:
    """Mean test Dice per arm (rows) and setting (columns)."""
    return {arm: [cell(runs_of(runs, arm, s)) for s in settings] for arm in arms}


def organ_tables(runs: pd.DataFrame, arms, settings) -> list[tuple[str, list[str], dict[str, list[float]]]]:
    """Per setting: ``(setting, organs, {arm: mean Dice per organ})`` over seeds and cases."""
    tables = []
    for setting in settings:
        found = {arm: r for arm in arms if (r := runs_of(runs, arm, setting))}
        if found:
            organs = next(iter(next(iter(found.values())).values()))["test"]["classes"]
            tables.append((setting, organs, {arm: organ_means(r) for arm, r in found.items()}))
    return tables


def cost_rows(runs: pd.DataFrame, arms) -> list[tuple[str, float | None, float | None, float | None, float | None]]:
    """Per arm: pretraining seconds (mean), fine-tuning seconds and epochs (mean), peak memory MB (max)."""
    rows = []
    for arm in arms:
        pre = list(runs_of(runs, arm, stage="pretrain").values())
        fine = runs[(runs.stage == "finetune") & (runs.arm == arm) & ~runs.probe].record.tolist()
        memory = [r["cost"]["peak_memory_mb"] for r in pre] + [r["cost"]["train"]["peak_memory_mb"] for r in fine]
        rows.append((arm, np.mean([r["cost"]["seconds"] for r in pre]) if pre else None,
                     np.mean([r["cost"]["train"]["seconds"] for r in fine]) if fine else None,
                     np.mean([r["epochs"] for r in fine]) if fine else None, max(memory) if fine else None))
    return rows


def step_cost(path: Path = STEP_BENCHMARK) -> dict | None:
    """The step micro-benchmark's committed result (the method's two embedding modes per training step) with its
    ``file`` name and the ``ratio`` of their median step times; ``None`` where not committed."""
    if not path.is_file():
        return None
    step = json.loads(path.read_text(encoding="utf-8"))
    return {**step, "file": path.name, "ratio": step["arms"]["channel"]["median_s"] / step["arms"]["pool"]["median_s"]}


def embedding_rows(runs: pd.DataFrame, arms) -> list[tuple[str, list[tuple[float, float, float]], int]]:
    """Per arm with embedding runs: (mean, min, max) of kNN accuracy, held-out and pool silhouette; seeds."""
    rows = []
    for arm in arms:
        if found := list(runs_of(runs, arm, stage="embedding").values()):
            values = [[r[k] for r in found] for k in ("knn_accuracy", "silhouette_test", "silhouette_pretrain")]
            rows.append((arm, [(np.mean(v), min(v), max(v)) for v in values], len(found)))
    return rows


def knn_curves(runs: pd.DataFrame, arms) -> dict[str, list[list[tuple[int, float]]]]:
    """kNN organ accuracy of held-out subjects per pretraining epoch, one curve per seed (EmbeddingQualityHandler)."""
    curves: dict[str, list] = {}
    for arm in arms:
        for run in runs_of(runs, arm, stage="pretrain").values():
            points = [(h["epoch"], h["metrics"]["embedding_knn_accuracy"]) for h in run.get("history", [])
                      if "embedding_knn_accuracy" in h.get("metrics", {})]
            if points:
                curves.setdefault(arm, []).append(points)
    return curves


def knn_rows(runs: pd.DataFrame, curves) -> list[tuple[str, int, int, float, float, float, int]]:
    """Per arm: first and last epoch measured, mean kNN first and last, held-out silhouette last, seeds."""
    rows = []
    for arm, found in curves.items():
        last = [r["history"][-1]["metrics"] for r in runs_of(runs, arm, stage="pretrain").values()
                if "embedding_knn_accuracy" in r.get("history", [{}])[-1].get("metrics", {})]
        silhouette = np.nanmean([m["embedding_silhouette_held_out"] for m in last]) if last else float("nan")
        rows.append((arm, found[0][0][0], found[0][-1][0], np.mean([c[0][1] for c in found]),
                     np.mean([c[-1][1] for c in found]), silhouette, len(found)))
    return rows


def _change(record: dict, size) -> tuple[list[tuple[str, object]], str | None]:
    """What a study variant changes: ``(setting, value)`` of its pretraining and fine-tuning settings that differ from
    the size's, and the arm whose encoders it fine-tunes where not its own."""
    config, pretrain = record["config"], record["config"]["pretrain"] or {}
    changes = [(k, v) for k, v in pretrain.get("arm_settings", {}).items() if k not in ("mask_mode", "overlay")
               and v is not None] + [(k, v) for k, v in config["finetune"].items() if size.finetune.get(k) != v]
    return changes, pretrain["arm"] if pretrain and pretrain.get("arm") != config["arm"] else None


def study_rows(runs: pd.DataFrame, size) -> list[StudyRow]:
    """The shortcut study's rows: main arms, then each variant with results on the study's seeds."""
    setting, rows = size.study_setting, []
    for arm in ["scratch", "semcl_exact", "semcl_coarse", *size.study_arms]:
        found = {s: r for s, r in runs_of(runs, arm, setting).items() if s in size.study_seeds}
        if not found:
            continue
        source = (next(iter(found.values()))["config"]["pretrain"] or {}).get("arm")
        history = [r.get("history") for s, r in runs_of(runs, source, stage="pretrain").items() if s in found]
        emb = [r for s, r in runs_of(runs, source or arm, stage="embedding").items() if s in found]
        loss = ((np.mean([h[0]["mean_loss"] for h in history]), np.mean([h[-1]["mean_loss"] for h in history]))
                if history and all(history) else None)
        against = [None if b == arm else compare(found, {s: r for s, r in runs_of(runs, b, setting).items()
                                                         if s in found}) for b in ("scratch", "semcl_exact")]
        rows.append(StudyRow(arm, _change(next(iter(found.values())), size) if arm in size.study_arms else None, loss,
                             np.mean([r["knn_accuracy"] for r in emb]) if emb else None,
                             np.mean([r["silhouette_test"] for r in emb]) if emb else None, cell(found), against))
    return rows


def unfinished(planned, finished: set[str]) -> list[tuple[str, str, str, str]]:
    """Planned runs without a result file, as ``(stage, arm, setting, seed ranges)`` in run order (a tuning run's
    candidate recipe after its setting)."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for run in planned:
        c = run.config
        recipe = f" ({c['tuning_recipe']})" if c.get("tuning_recipe") else ""  # a v3 tuning run's candidate
        where = ((c.get("setting") or "") + (" (probe)" if c.get("probe") else "") + recipe) or "-"
        groups.setdefault((c["stage"], c["arm"], where), []).extend([] if str(run.key) in finished else [c["seed"]])
    rows = []
    for (stage, arm, where), seeds in groups.items():
        if seeds:
            runs_of_seeds = np.split(np.array(sorted(seeds)), np.where(np.diff(sorted(seeds)) != 1)[0] + 1)
            ranges = ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs_of_seeds)
            rows.append((stage, arm, where, ranges))
    return rows
