"""The benchmark report as load -> analyse -> render, from the result files alone.

**Load** (:mod:`.load`): every finished run as one long pandas table. **Analyse** (:mod:`.endpoints`,
:mod:`.diagnosis`, :mod:`.tables`, :mod:`.difficulty`): typed values (frozen dataclasses, typed named tuples), every
wording that depends on a number decided there as a field, gathered by :func:`analyse` into one :class:`Report`.
**Render** (:func:`render`, :mod:`.plots`): one Jinja2 template per report (``templates/``) that only formats those
values. Version 1's report is frozen (``docs/RESULTS_v1.md``); a size without ``splits`` gets no regenerated report.
A v3 size (``draws``: the coarse-to-fine pipeline, ``docs/PROTOCOL_v3.md``) is analysed by :mod:`.v3` and rendered by
``templates/results_v3.md.j2`` (:func:`analyse_v3`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from semcl_components.bundle_runtime.atomic_io import atomic_write

from ..plan import Run
from ..protocol import Size
from ..results import ResultStore
from . import diagnosis, difficulty, endpoints, tables, v3
from .difficulty import read_cost_ratio
from .endpoints import REFERENCE, UPPER_BOUND_SETTING, is_atlas, is_method
from .load import TESTED, deviations, load_runs, mean_dice, provenance_of, runs_of
from .plots import write_embedding_plots, write_plots

__all__ = ["Report", "analyse", "analyse_v3", "mean_dice", "render", "write_report"]

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
    families: dict  # the declared families by endpoint (:func:`.endpoints.families`)
    values: dict  # the diagnoses and tables by name (see :func:`analyse`)


def _order(size: Size, runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The arms and settings of the main runs: in the size's order, then any others sorted."""
    main = runs[runs.stage.isin(TESTED) & ~runs.arm.isin(size.study_arms)]
    arms = [a for a in size.arms if a in set(main.arm)] + sorted(set(main.arm) - set(size.arms))
    settings = [s for s in size.settings if s in set(main.setting)] + sorted(set(main.setting) - set(size.settings))
    return arms, settings


def _diagnoses(runs: pd.DataFrame, size: Size, arms: list[str], settings: list[str], families: dict) -> dict:
    """What bounds the gain, whether the baselines were at their best, what the runs do not support."""
    limited = [s for s in settings if s != UPPER_BOUND_SETTING]
    collapse = sorted(diagnosis.collapse_rows(runs), key=lambda c: [REFERENCE, *size.arms].index(c.arm))
    endpoint = [o for f in [families["primary"], *families["secondary"].values()] for o in f.outcomes]
    return {
        "upper": tables.cell(runs_of(runs, REFERENCE, UPPER_BOUND_SETTING)),
        "headroom": diagnosis.gaps(runs, REFERENCE, UPPER_BOUND_SETTING, REFERENCE, limited),
        "atlases": {a: diagnosis.gaps(runs, REFERENCE, None, a, limited) for a in arms if is_atlas(a)},
        "noise": diagnosis.noise(runs, [a for a in arms if is_method(a)], limited),
        "method_reaches": [x for x in families["time to accuracy"].outcomes
                           if is_method(x.arm) and x.setting in limited and x.paired > 1],
        "caps": diagnosis.caps(runs), "collapse": collapse, "validating": diagnosis.validating_rows(runs),
        "pretraining_budgets": [b for b in diagnosis.pretraining_budgets(runs) if b.arm in {c.arm for c in collapse}],
        "probe_against_full": diagnosis.probe_against_full(runs, size.probe_setting),
        "low_organs": diagnosis.low_organs(runs, [a for a in arms if not is_atlas(a)], limited),
        "ceilings": diagnosis.setting_ceilings(endpoint),
        "own_best": diagnosis.own_best(endpoint, families["budget fractions"].outcomes),
        "draws": diagnosis.draws(runs), "pool_mask_arms": diagnosis.pool_mask_arms(runs),
    }


def _tables(runs: pd.DataFrame, size: Size, planned: Sequence[Run], arms: list[str], settings: list[str],
            phases: list[str | None], plots: Path) -> dict:
    """The report's tables, provenance and difficulty criteria (``phases``: the phase bucket of each test case)."""
    curves = tables.knn_curves(runs, [a for a in size.arms if a in set(runs[runs.stage == "pretrain"].arm)])
    return {
        "deviations": deviations(size), "unfinished": tables.unfinished(planned, set(runs.key)),
        "headline": tables.headline(runs, arms, settings),
        "phase_counts": {p: phases.count(p) for p in sorted({p for p in phases if p is not None})},
        "probe_cells": {a: tables.cell(runs_of(runs, a, size.probe_setting, True))
                        for a in sorted(set(runs[runs.probe].arm), key=[REFERENCE, *size.arms].index)},
        "organs": tables.organ_tables(runs, arms, settings),
        "cost": tables.cost_rows(runs, [a for a in arms if not is_atlas(a)]),
        "step": tables.step_cost(), "provenance": [provenance_of(k, r) for k, r in sorted(zip(runs.key, runs.record))],
        "embedding": tables.embedding_rows(runs, list(size.arms)),
        "study": tables.study_rows(runs, size) if size.study_arms else [],
        "difficulty": (difficulty.criteria(runs, size, read_cost_ratio(plots.parent))
                       if size.difficulty_criteria else None),
        "knn_curves": curves, "knn": tables.knn_rows(runs, curves),
        "machines": sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, torch {r['machine']['torch']})"
                            for r in runs.record}),
        "dates": sorted(r["finished"] for r in runs.record),
        "codes": sorted({r.get("code", "not recorded") for r in runs.record}),
    }


def analyse(size: Size, planned: Sequence[Run], runs: pd.DataFrame, plots: Path, command: str,
            written: str | None = None) -> Report:
    """Every value of the v2 report, from the long table of finished ``runs`` of the ``planned`` ones (``written``:
    the time it names, default now)."""
    arms, settings = _order(size, runs)
    keys = {(r.config["arm"], r.config["setting"], bool(r.config["probe"])) for r in planned
            if r.config["stage"] == "finetune"}
    phases = next((p for r in runs.record if r.get("test") and (p := r["test"].get("contrast_phases"))), None) or []
    families = endpoints.families(runs, size, keys, settings, sorted({p for p in phases if p is not None}))
    values = _diagnoses(runs, size, arms, settings, families)
    values |= _tables(runs, size, planned, arms, settings, phases, plots)
    return Report(size, command, written or time.strftime("%Y-%m-%d %H:%M"), len(runs), len(planned), arms,
                  settings, families, values)


def analyse_v3(size: Size, planned: Sequence[Run], runs: pd.DataFrame, command: str, written: str | None = None,
               unplanned: str | None = None, floor: Path | None = None,
               check: v3.RecipeCheck | None = None) -> Report:
    """Every value of a v3 size's report (:func:`.v3.analyse`); ``unplanned``: why no run could be planned;
    ``floor``: the resolution floor's file; ``check``: the size's recipe check."""
    arms, settings, families, values = v3.analyse(size, planned, runs, floor, check)
    return Report(size, command, written or time.strftime("%Y-%m-%d %H:%M"), len(runs), len(planned), arms,
                  settings, families, {**values, "unplanned": unplanned})


def _estimate(e, seeds: int, spec: str) -> str:
    """``mean [low, high]`` of an estimate, no interval with 1 seed."""
    if seeds < 2:
        return f"{e.mean:{spec}} [no interval: 1 seed]"
    return f"{e.mean:{spec}} [{e.low:{spec}}, {e.high:{spec}}]"


def render(report: Report, plots: str, template: str = "results_v2.md.j2") -> str:
    """The report's Markdown from its template; ``plots``: the plots folder relative to the report."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters.update(
        num=lambda x, spec: "-" if x is None else format(x, spec), f3=lambda x: "-" if x is None else f"{x:.3f}",
        s3=lambda x: f"{x:+.3f}", p=lambda x: "n/a" if x != x else f"{x:.4f}",
        est=lambda e, n=2: _estimate(e, n, ".3f"), diff=lambda e, n=2: _estimate(e, n, "+.3f"), json=json.dumps)
    environment.tests["method"] = endpoints.is_method
    environment.globals["DIRECTION"] = endpoints.DIRECTION
    return environment.get_template(template).render(r=report, v=report.values, plots=plots)


def write_report(size: Size, planned: Sequence[Run], store: ResultStore, report: Path, command: str,
                 written: str | None = None, unplanned: str | None = None,
                 check: v3.RecipeCheck | None = None) -> None:
    """Write ``report`` (Markdown) and its plots (``<results folder>/plots``) from the finished runs of ``planned``
    (a v3 size's report has no plots; ``unplanned``: why none of its runs could be planned, said in the report;
    ``check``: its recipe check).

    A size without ``splits`` or ``draws`` (v1) is refused: its report is frozen with its result files.
    """
    if getattr(size, "draws", None) is not None:
        analysed = analyse_v3(size, planned, load_runs(planned, store), command, written, unplanned, v3.FLOOR_FILE,
                              check)
        text = render(analysed, "", "results_v3.md.j2")
    elif getattr(size, "splits", None) is None:
        raise ValueError(f"size {size.name!r} has no splits: version 1's report is frozen (docs/RESULTS_v1.md); "
                         "no code regenerates it.")
    else:
        runs = load_runs(planned, store)
        plots = store.folder / "plots"
        analysed = analyse(size, planned, runs, plots, command, written)
        trained = [a for a in analysed.arms if not is_atlas(a)]
        analysed.values["plots"] = write_plots(runs, analysed.values["headline"], trained, analysed.settings, plots)
        write_embedding_plots(runs, analysed.values["embedding"], analysed.values["knn_curves"], plots)
        text = render(analysed, os.path.relpath(plots, report.parent))
    with atomic_write(report) as tmp:
        tmp.write_text(text, encoding="utf-8")
