"""The benchmark report as load -> analyse -> render, from the result files alone.

**Load** (:mod:`.load`): every finished run as one long pandas table, read and validated once. **Analyse**
(:mod:`.endpoints`, :mod:`.accuracy`, :mod:`.budget`, :mod:`.diagnosis`, :mod:`.tables`, :mod:`.difficulty`): frozen
dataclasses, one per endpoint or diagnosis, every wording that depends on a number decided there as a field;
:func:`analyse` gathers them into one :class:`Report`. **Render** (:func:`render`): one Jinja2 template per report
(``templates/``) that only formats those values. Version 1's report is frozen (``docs/RESULTS_v1.md`` beside its
result files); a size without ``splits`` gets no regenerated report.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from semcl_components.bundle_runtime.atomic_io import atomic_write

from ..plan import Run
from ..protocol import Size
from ..results import ResultStore
from . import accuracy, budget, diagnosis, difficulty, endpoints, tables
from .difficulty import read_cost_ratio
from .load import deviations, load_runs, mean_dice
from .plots import write_embedding_plots, write_plots

__all__ = ["Report", "analyse", "mean_dice", "render", "write_report"]

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Report:
    """Every value the v2 report prints (see the template for where)."""

    size: Size
    command: str
    written: str
    finished: int
    planned: int
    arms: list[str]
    settings: list[str]
    families: dict[str, endpoints.Family]  # primary, secondary titles, "per phase", "probe", "budget fractions"
    values: dict = field(default_factory=dict)  # the diagnoses and tables by name (see :func:`analyse`)


def _order(size: Size, runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    main = runs[runs.stage.isin(("finetune", "atlas")) & ~runs.arm.isin(size.study_arms)]
    arms = [a for a in size.arms if a in set(main.arm)] + sorted(set(main.arm) - set(size.arms))
    settings = [s for s in size.settings if s in set(main.setting)] + sorted(set(main.setting) - set(size.settings))
    return arms, settings


def _families(runs, size, keys, settings) -> dict[str, endpoints.Family]:
    seeds = len(size.seeds) or None
    found = {"primary": endpoints.family(runs, endpoints.primary_family(), seeds)}
    found |= {t: endpoints.family(runs, tests, seeds) for t, tests in endpoints.secondary_families(keys).items()}
    phases = next((p for r in runs.record if r.get("test") and (p := r["test"].get("contrast_phases"))), None)
    buckets = sorted({p for p in phases or () if p is not None})
    found["per phase"] = endpoints.family(runs, [endpoints.Test(t.method, t.baseline, t.setting, phase=p)
                                                 for p in buckets for t in endpoints.primary_family()], seeds)
    found["probe"] = endpoints.family(runs, endpoints.probe_family(keys, size.probe_setting),
                                      len(size.probe_seeds) or None)
    pairs = accuracy.declared_reaches(keys, settings)
    found["budget fractions"] = accuracy.budget_fraction_family(runs, pairs, seeds)
    return found


def analyse(size: Size, planned: Sequence[Run], runs: pd.DataFrame, plots: Path, command: str) -> Report:
    """Every value of the v2 report, from the long table of finished ``runs`` of the ``planned`` ones."""
    arms, settings = _order(size, runs)
    keys = {(r.config["arm"], r.config["setting"], bool(r.config["probe"])) for r in planned
            if r.config["stage"] == "finetune"}
    families = _families(runs, size, keys, settings)
    trained = [a for a in arms if not endpoints.is_atlas(a)]
    limited = [s for s in settings if s != endpoints.UPPER_BOUND_SETTING]
    methods = [a for a in arms if endpoints.is_method(a)]
    pairs = accuracy.declared_reaches(keys, settings)
    reaches = accuracy.reach_family(runs, pairs)
    endpoint = [o for name, f in families.items() if name not in ("per phase", "probe", "budget fractions")
                for o in f.outcomes]
    phases = next((p for r in runs.record if r.get("test") and (p := r["test"].get("contrast_phases"))), None) or []
    order = {a: i for i, a in enumerate([endpoints.REFERENCE, *size.arms])}.get
    collapse = sorted(budget.collapse_rows(runs), key=lambda c: order(c.arm))
    contrastive = {c.arm for c in collapse}
    values = {
        "deviations": deviations(size),
        "unfinished": tables.unfinished(planned, set(runs.key)),
        "upper": tables.cell(diagnosis.runs_of(runs, endpoints.REFERENCE, endpoints.UPPER_BOUND_SETTING)),
        "headroom": diagnosis.gaps(runs, endpoints.REFERENCE, endpoints.UPPER_BOUND_SETTING, endpoints.REFERENCE,
                                   limited),
        "atlases": {a: diagnosis.gaps(runs, endpoints.REFERENCE, None, a, limited)
                    for a in arms if endpoints.is_atlas(a)},
        "noise": diagnosis.noise(runs, methods, limited),
        "reaches": reaches, "declared_reaches": len(pairs),
        "method_reaches": [x for x in reaches if endpoints.is_method(x.arm) and x.setting in limited and x.paired > 1],
        "reach_floor": accuracy.reach_floor(reaches, len(pairs), len(size.seeds) or None),
        "caps": budget.caps(runs), "collapse": collapse, "validating": budget.validating_rows(runs),
        "pretraining_budgets": [b for b in budget.pretraining_budgets(runs) if b.arm in contrastive],
        "baseline_collapse": [c for c in collapse if not endpoints.is_method(c.arm)],
        "probe_against_full": budget.probe_against_full(runs, size.probe_setting),
        "low_organs": diagnosis.low_organs(runs, trained, limited),
        "ceilings": diagnosis.setting_ceilings(endpoint),
        "own_best": diagnosis.own_best(endpoint, families["budget fractions"].outcomes),
        "draws": diagnosis.draws(runs), "pool_mask_arms": diagnosis.pool_mask_arms(runs),
        "headline": tables.headline(runs, arms, settings),
        "phase_counts": {p: phases.count(p) for p in sorted({p for p in phases if p is not None})},
        "probe_cells": {a: tables.cell(diagnosis.runs_of(runs, a, size.probe_setting, True))
                        for a in sorted(set(runs[runs.probe].arm), key=order)},
        "organs": tables.organ_tables(runs, arms, settings), "cost": tables.cost_rows(runs, trained),
        "step": tables.step_cost(), "provenance": tables.file_provenance(runs),
        "embedding": tables.embedding_rows(runs, list(size.arms)),
        "study": tables.study_rows(runs, size) if size.study_arms else [],
        "difficulty": difficulty.criteria(runs, size, read_cost_ratio(plots.parent)) if size.difficulty_criteria else None,
    }
    pretrained = [a for a in size.arms if a in set(runs[runs.stage == "pretrain"].arm)]
    values["knn_curves"] = tables.knn_curves(runs, pretrained)
    values["knn"] = tables.knn_rows(runs, values["knn_curves"])
    values["machines"] = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, torch {r['machine']['torch']})"
                                 for r in runs.record})
    values["dates"] = sorted(r["finished"] for r in runs.record)
    values["codes"] = sorted({r.get("code", "not recorded") for r in runs.record})
    return Report(size, command, time.strftime("%Y-%m-%d %H:%M"), len(runs), len(planned), arms, settings, families,
                  values)


def render(report: Report, plots: str, template: str = "results_v2.md.j2") -> str:
    """The report's Markdown from its template; ``plots``: the plots folder relative to the report."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters.update(
        f3=lambda x: "-" if x is None else f"{x:.3f}", s3=lambda x: f"{x:+.3f}",
        p=lambda x: "n/a" if x != x else f"{x:.4f}",
        est=lambda e, n=2: f"{e.mean:.3f} [no interval: 1 seed]" if n < 2 else f"{e.mean:.3f} [{e.low:.3f}, {e.high:.3f}]",
        json=json.dumps,
        diff=lambda e, n=2: f"{e.mean:+.3f} [no interval: 1 seed]" if n < 2 else f"{e.mean:+.3f} [{e.low:+.3f}, {e.high:+.3f}]")
    environment.tests["method"] = endpoints.is_method
    environment.globals["DIRECTION"] = endpoints.DIRECTION
    return environment.get_template(template).render(r=report, v=report.values, plots=plots)


def write_report(size: Size, planned: Sequence[Run], store: ResultStore, report: Path, command: str,
                 written: str | None = None) -> None:
    """Write ``report`` (Markdown) and its plots (``<results folder>/plots``) from the finished runs of ``planned``.

    A size without ``splits`` (v1) is refused: its report is frozen with its result files.
    """
    if getattr(size, "splits", None) is None:
        raise ValueError(f"size {size.name!r} has no splits: version 1's report is frozen (docs/RESULTS_v1.md); "
                         "no code regenerates it.")
    runs = load_runs(planned, store)
    plots = store.folder / "plots"
    analysed = analyse(size, planned, runs, plots, command)
    if written is not None:
        analysed = Report(**{**analysed.__dict__, "written": written})
    trained = [a for a in analysed.arms if not endpoints.is_atlas(a)]
    analysed.values["plots"] = write_plots(runs, trained, analysed.settings, plots)
    write_embedding_plots(runs, analysed.values["embedding"], analysed.values["knn_curves"], plots)
    text = render(analysed, os.path.relpath(plots, report.parent))
    with atomic_write(report) as tmp:
        tmp.write_text(text, encoding="utf-8")
