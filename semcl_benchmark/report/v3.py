"""Analyse: benchmark v3's endpoints and tables (``docs/PROTOCOL_v3.md`` sections 5, 7-9, 11, 12) as typed values.

The coarse-to-fine pipeline's run records (schema 4) are read as v2's long table (:mod:`.load`), then viewed for v3
(:func:`view`): the tuning seeds' runs apart (they choose the recipes and are never a result), each oracle-prior test
as a fine-tuning run of the arm ``<arm>+oracle`` (so that v2's comparisons pair it by seed with the same network's
stage-1-prior test), and each test case's phase taken from the run's draw. The families are v2's machinery
(:mod:`.endpoints`: two-sided Wilcoxon paired by seed, Holm over the declared tests, crossed bootstrap intervals) over
section 7's tests; each also says the smallest Holm p its planned seeds can give (:func:`.endpoints.smallest_holm_p`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..draws_v3 import BUCKET_ORDER
from ..protocol import Size
from ..results import results_folder
from ..run_records import RunKey, RunResult, case_id
from ..runs import Run
from ..statistics import crossed_bootstrap
from .endpoints import ALPHA, Family, Test, family, grid, reach_family, smallest_holm_p
from .load import FileProvenance, deviations, provenance_of, runs_of, table
from .tables import Cell, headline, organ_tables, unfinished

__all__ = ["FLOOR_FILE", "FamilyRow", "PhaseTable", "PriorMismatch", "RecipeCheck", "RecipeRow", "analyse",
           "check_family", "declared_tests", "families", "phase_tables", "prior_mismatches", "recipe_rows",
           "resolution_floor", "view"]

PRIMARY_METHODS = ("cascade_semcl", "cascade_semcl_frozen")
BASELINE = "cascade_scratch"  # stage 2 from random init: the primary baseline
STAGE1 = "scratch"  # image-only; the seed's stage 1
SETTINGS = ("finetune_1", "finetune_2")
SMALL_ORGANS = ("gallbladder", "pancreas")  # reported first: below 0.5 Dice in every v2 arm
TIME_TO_ACCURACY = ("cascade_semcl", "cascade_semcl_frozen", "cascade_supervised")
ORACLE = "+oracle"  # the arm name of a stage-2 network's test on oracle priors
RECIPE_CHECK = "v2 recipe check"  # a family read from its own size's runs (a size's ``recipe_check``)
PRIOR_SPLITS = {"training": "pretrain", "validation": "validation", "test": "test"}  # prior use -> predicted split
#: the resolution floor's measurement (M7, ``python -m semcl_benchmark.resolution_floor --size v3``): a reference row
FLOOR_FILE = results_folder("v3_sizing") / "resolution_floor.json"

#: A declared family (``family``: its outcomes so far, :class:`.endpoints.Family`), its ``seeds`` as planned, the
#: smallest Holm p those seeds can give and whether that is below :data:`.endpoints.ALPHA`.
FamilyRow = NamedTuple("FamilyRow", [("title", str), ("family", Family), ("seeds", int), ("smallest", float),
                                     ("reachable", bool)])
#: Per setting: the phase buckets of the test cases, how many test cases each holds, each arm's Dice per bucket.
PhaseTable = NamedTuple("PhaseTable", [("setting", str), ("phases", list), ("cases", list), ("cells", dict)])
#: An arm's recipe: the chosen one (``None``: not chosen yet) and each candidate's mean best validation Dice over its
#: tuning runs (``runs`` of ``expected``), read from the protocol's ``recipes`` entry (``source`` ``protocol``) or
#: from the tuning runs (``tuning runs``; ``none`` without any); an arm taking another's recipe (``recipe_of``) has
#: no candidate values and a ``source`` that names that arm.
RecipeRow = NamedTuple("RecipeRow", [("arm", str), ("chosen", str | None), ("validation_dice", dict),
                                     ("runs", dict), ("expected", int), ("source", str)])
#: A size's recipe check (its ``recipe_check``, section 4): the check's size, the baseline arm and the long table of
#: the check's finished fine-tuning runs (tuning seeds' candidates included) with the baseline's runs of its seeds.
RecipeCheck = NamedTuple("RecipeCheck", [("size", Size), ("baseline_arm", str), ("runs", pd.DataFrame)])
#: A run whose stage-1 priors for one use are not the files its seed's predict run wrote: ``cases`` of them differ.
PriorMismatch = NamedTuple("PriorMismatch", [("key", str), ("use", str), ("predict", str), ("cases", int)])


def with_draw_phases(record: dict) -> dict:
    """``record`` with its test cases' phases (``test["contrast_phases"]``) read from its draw, where it has both."""
    test, phases = record.get("test"), (record.get("draw") or {}).get("phases")
    if not test or not phases:
        return record
    return {**record, "test": {**test, "contrast_phases": [phases.get(case_id(c)) for c in test["cases"]]}}


def view(runs: pd.DataFrame, size: Size) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(main, tuning)``: the runs of the main seeds (oracle tests as arm ``<arm>+oracle``, phases from the draws)
    and those of the tuning seeds."""
    records = {}
    for key, record in zip(runs.key, runs.record):
        config = record["config"]
        if config["seed"] in size.tuning_seeds:
            continue
        if config["stage"] == "oracle":
            config = {**config, "stage": "finetune", "arm": config["arm"] + ORACLE}
        records[key] = {**with_draw_phases(record), "config": config}
    return table(records), runs[runs.seed.isin(size.tuning_seeds)]


def declared_tests(organs: Sequence[str], phases: Sequence[str], oracle_arms: Sequence[str]) -> dict[str, list]:
    """Section 7's families as their tests, the primary first (time to accuracy: ``(arm, setting)`` pairs)."""
    primary = [Test(m, BASELINE, s) for s in SETTINGS for m in PRIMARY_METHODS]
    pairs = (("cascade_semcl", BASELINE), (BASELINE, STAGE1))
    return {
        "primary": primary,
        "refinement by itself": [Test(BASELINE, STAGE1, s) for s in SETTINGS],
        "self-training": [Test("cascade_semcl", "cascade_supervised", s) for s in SETTINGS],
        "small organs": [Test(m, b, s, organ=o) for s in SETTINGS for o in SMALL_ORGANS for m, b in pairs],
        "every organ": [Test(t.method, t.baseline, t.setting, organ=o) for o in organs for t in primary],
        "per phase": [Test(t.method, t.baseline, t.setting, phase=p) for p in phases for t in primary],
        "time to accuracy": [(a, s) for s in SETTINGS for a in TIME_TO_ACCURACY],
        "oracle-prior gap": [Test(a + ORACLE, a, s) for s in SETTINGS for a in oracle_arms],
        "ground-truth pool masks": [Test("cascade_semcl_gt", b, s) for s in SETTINGS
                                    for b in ("cascade_semcl", BASELINE)],
    }


def _organs(main: pd.DataFrame) -> list[str]:
    """The organs of the test Dice: a finished run's, else the bundle's classes."""
    tested = [r for r in main.record if r.get("test")]
    if tested:
        return list(tested[0]["test"]["classes"])
    from semcl_components.bundle_runtime.bundle_files import read_settings
    from semcl_components.bundle_runtime.labels import class_names

    from ..stages import CONFIGS

    return class_names(read_settings(CONFIGS / "metadata.json")["network_data_format"]["outputs"]["pred"]["channel_def"])


def _row(title: str, found: Family, seeds: int) -> FamilyRow:
    smallest = smallest_holm_p(seeds, found.declared)
    return FamilyRow(title, found, seeds, smallest, smallest < ALPHA)


def check_family(check: RecipeCheck) -> FamilyRow:
    """The recipe check's family: each of its arms (the chosen recipe, its main seeds) minus the baseline arm's
    committed runs of the same seeds, in each of its settings."""
    seeds = len(check.size.seeds)
    declared = [Test(arm, check.baseline_arm, s) for s in check.size.settings for arm in check.size.arms]
    main = check.runs[~check.runs.seed.isin(check.size.tuning_seeds)]
    return _row(RECIPE_CHECK, family(main, declared, seeds), seeds)


def planned_seeds(planned: Sequence[Run], size: Size) -> dict[tuple[str, str], set[int]]:
    """Per ``(arm, setting)`` (an oracle test as arm ``<arm>+oracle``): the main seeds with a planned test."""
    seeds: dict[tuple[str, str], set[int]] = {}
    for key in (run.key for run in planned):
        if key.stage in ("finetune", "oracle") and key.seed not in size.tuning_seeds and key.tuning_recipe is None:
            seeds.setdefault((key.arm + ORACLE if key.stage == "oracle" else key.arm, key.setting), set()).add(key.seed)
    return seeds


def family_seeds(declared: Sequence, planned: dict[tuple[str, str], set[int]], size: Size) -> int:
    """The seeds a family pairs as planned: the fewest that any of its tests with a planned pair has planned for both
    its arms; where none has (nothing planned yet), the fewest of the size's seeds (an arm's ``arm_seeds``) shared."""
    pairs = [((t[0], t[1]), (BASELINE, t[1])) if isinstance(t, tuple)
             else ((t.method, t.setting), (t.baseline, t.setting)) for t in declared]
    counts = [n for a, b in pairs if (n := len(planned.get(a, set()) & planned.get(b, set())))]
    if counts:
        return min(counts)

    def of(arm: str) -> set[int]:
        return set(size.arm_seeds.get(arm.removesuffix(ORACLE), size.seeds)) & set(size.seeds)

    return min((len(of(a) & of(b)) for (a, _), (b, _) in pairs), default=len(size.seeds))


def families(main: pd.DataFrame, size: Size, check: RecipeCheck | None = None,
             planned: Sequence[Run] = ()) -> dict:
    """``primary`` and ``secondary`` (``{title: FamilyRow}``, section 7's order) over the main seeds' runs, each
    with the seeds its ``planned`` runs pair (:func:`family_seeds`), the recipe ``check``'s family last where given."""
    tests = declared_tests(_organs(main), BUCKET_ORDER, size.oracle_arms)
    paired = planned_seeds(planned, size)
    rows = {}
    for title, declared in tests.items():
        seeds = family_seeds(declared, paired, size)
        found = (reach_family(main, declared, seeds, BASELINE) if title == "time to accuracy"
                 else family(main, declared, seeds))
        rows[title] = _row(title, found, seeds)
    if check is not None:
        rows[RECIPE_CHECK] = check_family(check)
    return {"primary": rows.pop("primary"), "secondary": rows}


def _organs_first(tables: list) -> list[tuple[str, list[str], dict[str, list[float]]]]:
    """v2's per-organ tables with the small organs first."""
    ordered = []
    for setting, organs, means in tables:
        order = [organs.index(o) for o in SMALL_ORGANS if o in organs]
        order += [i for i in range(len(organs)) if i not in order]
        ordered.append((setting, [organs[i] for i in order], {a: [m[i] for i in order] for a, m in means.items()}))
    return ordered


def phase_tables(main: pd.DataFrame, arms: Sequence[str], settings: Sequence[str]) -> list[PhaseTable]:
    """Per setting: each arm's mean test Dice within each phase bucket of the test cases (crossed bootstrap)."""
    tables = []
    for setting in settings:
        found = {arm: r for arm in arms if (r := runs_of(main, arm, setting))}
        if not found:
            continue
        phases = next(iter(next(iter(found.values())).values()))["test"].get("contrast_phases") or []
        buckets = [p for p in BUCKET_ORDER if p in phases] + sorted({p for p in phases if p not in BUCKET_ORDER} - {None})
        cells = {arm: [Cell(crossed_bootstrap(grid(r, sorted(r), p)), len(r)) for p in buckets]
                 for arm, r in found.items()}
        tables.append(PhaseTable(setting, buckets, [phases.count(p) for p in buckets], cells))
    return tables


def recipe_rows(size: Size, tuning: pd.DataFrame) -> list[RecipeRow]:
    """Each recipe arm's recipe (section 5): the protocol's recorded choice, else its tuning runs so far; then each
    arm that takes another's recipe (the size's ``recipe_of``)."""
    candidates, expected = list(size.recipe_candidates), len(size.tuning_seeds) * len(SETTINGS)
    rows = []
    for arm in size.recipe_arms:
        entry = size.recipes.get(arm)
        if entry:
            dice = entry.get("validation_dice") or {}
            rows.append(RecipeRow(arm, entry.get("chosen"), {c: dice.get(c) for c in candidates}, {}, expected,
                                  "protocol"))
            continue
        best = {c: [r.get("best_metric") for r in tuning.record if r["config"]["arm"] == arm
                    and r["config"].get("tuning_recipe") == c and r.get("best_metric") is not None]
                for c in candidates}
        rows.append(RecipeRow(arm, None, {c: float(np.mean(v)) if v else None for c, v in best.items()},
                              {c: len(v) for c, v in best.items()}, expected,
                              "tuning runs" if any(best.values()) else "none"))
    for arm, source in size.recipe_of.items():  # no tuning runs of its own: the chosen recipe of ``source``
        rows.append(RecipeRow(arm, size.chosen_recipe(arm), dict.fromkeys(candidates), {}, 0,
                              f"`{source}`'s choice (no tuning runs of its own)"))
    return rows


def prior_mismatches(runs: pd.DataFrame) -> list[PriorMismatch]:
    """Runs whose stage-1 priors (SHA-256 by case) are not the files their seed's predict run wrote (a unit whose
    predictions were made again after its stage-2 runs); a predict run not finished is not checked."""
    written = {key: record.get("predictions") or {} for key, record in zip(runs.key, runs.record)
               if record["config"]["stage"] == "predict"}
    found = []
    for key, record in zip(runs.key, runs.record):
        for use, prior in (record.get("priors") or {}).items():
            if prior.get("source") != "stage1":
                continue
            stage1 = RunKey.parse(prior["stage1_run"])
            predict = RunKey("predict", stage1.arm, stage1.setting, stage1.seed).name
            if predict in written:
                files = written[predict].get(PRIOR_SPLITS[use]) or {}
                differ = [c for c, sha in prior["sha256"].items() if (files.get(c) or {}).get("sha256") != sha]
                if differ:
                    found.append(PriorMismatch(key, use, predict, len(differ)))
    return found


def provenance(runs: pd.DataFrame) -> dict:
    """Commits, runs from a dirty tree, CPU models, each encoder loaded (SHA-256, loaded fraction), prior files."""
    files: list[FileProvenance] = [provenance_of(k, r) for k, r in zip(runs.key, runs.record)]
    return {"commits": sorted({f.commit for f in files if f.commit}), "dirty": [f.key for f in files if f.dirty],
            "cpus": sorted({(r.get("machine") or {}).get("cpu") or "not recorded" for r in runs.record}),
            "encoders": [f for f in files if f.encoder_sha256], "partial": [f.key for f in files if f.partial_load],
            "prior_mismatches": prior_mismatches(runs)}


def cost_rows(runs: pd.DataFrame) -> list[tuple[str, str, int, float, float]]:
    """Per stage and arm: runs, mean and total seconds (each run's ``total_seconds``, else its measured cost)."""
    rows = []
    for (stage, arm), group in runs.groupby(["stage", "arm"], sort=False):
        seconds = [r.get("total_seconds") or RunResult(stage, r).seconds() for r in group.record]
        rows.append((stage, arm, len(seconds), float(np.mean(seconds)), float(np.sum(seconds))))
    return rows


def resolution_floor(path: Path | None, size: Size) -> dict | None:
    """The resolution floor measured for ``size`` in ``path`` (its ``mean_dice``, ``organ_dice``, ``file``: the file's
    name); ``None`` where not measured for it."""
    if path is None or not path.is_file():
        return None
    found = json.loads(path.read_text(encoding="utf-8"))
    return {**found, "file": path.name} if found.get("size") == size.name else None


def analyse(size: Size, planned: Sequence[Run], runs: pd.DataFrame, floor: Path | None = None,
            check: RecipeCheck | None = None) -> tuple[list[str], list[str], dict, dict]:
    """``(arms, settings, families, values)`` of the v3 report from the finished ``runs`` of the ``planned`` ones
    (``floor``: the resolution floor's file, :func:`resolution_floor`; ``check``: the size's recipe check)."""
    main, tuning = view(runs, size)
    present = set(main[main.stage == "finetune"].arm)
    arms = [a for a in size.arms if a in present] + [a + ORACLE for a in size.oracle_arms if a + ORACLE in present]
    settings = [s for s in size.settings if s in set(main[main.stage == "finetune"].setting)]
    values = {
        "headline": headline(main, arms, settings), "organs": _organs_first(organ_tables(main, arms, settings)),
        "phases": phase_tables(main, arms, settings),
        "recipes": recipe_rows(size, tuning), "check_recipes": None if check is None else recipe_rows(
            check.size, check.runs[check.runs.seed.isin(check.size.tuning_seeds)]),
        "pretraining": [(k, r["pretraining"]) for k, r in zip(runs.key, runs.record) if r.get("pretraining")],
        "provenance": provenance(runs), "cost": cost_rows(runs), "unfinished": unfinished(planned, set(runs.key)),
        "deviations": deviations(size), "tuning": len(tuning), "floor": resolution_floor(floor, size),
    }
    return arms, settings, families(main, size, check, planned), values
