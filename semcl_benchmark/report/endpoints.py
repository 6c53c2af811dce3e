"""Analyse: the endpoints that ``docs/PROTOCOL.md`` declares for benchmark v2, tested as families (Holm's correction).

Every test is a paired two-sided Wilcoxon signed-rank test over seeds, every interval a crossed bootstrap over seeds
and the shared test cases, every p Holm-adjusted over its family's declared tests (without results yet: p = 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..run_records import RunResult
from ..statistics import Estimate, crossed_bootstrap, holm, paired_wilcoxon
from .load import case_means, case_phases, runs_of, table

__all__ = ["ALPHA", "DIRECTION", "Family", "HolmFloor", "Outcome", "Reach", "Test", "budget_fraction_family",
           "declared_reaches", "families", "family", "holm_floor", "is_atlas", "is_method", "primary_family",
           "probe_family", "reach", "reach_family", "run_family", "secondary_families", "smallest_holm_p"]

ALPHA = 0.05  # a test is significant when its Holm-adjusted p is below it
TARGET_GAIN = 0.05  # the target: +5 Dice points over random init
MIN_SEEDS = 2  # one run is one sample: resampling its test cases alone would feign precision
REFERENCE = "scratch"
PRIMARY_METHODS = ("semcl_exact", "semcl_coarse")
PRIMARY_SETTINGS = ("finetune_1", "finetune_2")
SECONDARY_BASELINES = ("simclr", "supervised")
MORE_LABELS_SETTING = "finetune_4"
PAPER_ARM = "semcl_labelled"  # semantic-aware pretraining on the seed's labelled volumes, then fine-tuning on them
UPPER_BOUND_SETTING = "finetune_all"
#: What each :attr:`Outcome.direction` says in words (the report's templates and the demo print these).
DIRECTION = {"gain": "gain", "loss": "loss", "none": "no significant difference", "untestable": "not testable: 1 seed"}


def is_atlas(arm: str) -> bool:
    """Whether ``arm`` copies or votes labelled maps onto the test case (no training)."""
    return arm.startswith("atlas")


def is_method(arm: str) -> bool:
    """Whether ``arm`` is one of the method's arms (else a baseline)."""
    return arm.startswith("semcl")


@dataclass(frozen=True)
class Test:
    """One declared comparison: ``method`` against ``baseline`` in ``setting`` (probe runs, one phase bucket, one
    organ's Dice instead of the case mean)."""

    method: str
    baseline: str
    setting: str
    probe: bool = False
    phase: str | None = None
    organ: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A test's paired difference (crossed bootstrap), raw and Holm-adjusted Wilcoxon p and paired seeds;
    ``direction``: ``gain`` or ``loss`` (Holm p < :data:`ALPHA`), ``none`` or ``untestable`` (1 seed)."""

    test: Test
    difference: Estimate
    p: float
    holm_p: float
    seeds: int
    direction: str = field(init=False)
    reaches_target: bool = field(init=False)  # the estimate is at least the +0.05 target
    interval_disagrees: bool = field(init=False)  # significant, yet the bootstrap interval includes 0

    def __post_init__(self) -> None:
        significant = self.seeds >= MIN_SEEDS and self.holm_p < ALPHA
        direction = "untestable" if self.seeds < MIN_SEEDS else "none" if not significant else (
            "gain" if self.difference.mean > 0 else "loss")
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "reaches_target", self.difference.mean >= TARGET_GAIN)
        object.__setattr__(self, "interval_disagrees",
                           significant and self.difference.low <= 0 <= self.difference.high)


#: No test of a family of ``tests`` can reach :data:`ALPHA` with ``seeds`` seeds (smallest Holm p ``smallest``);
#: ``by_design``: not even with every seed the protocol plans.
HolmFloor = NamedTuple("HolmFloor", [("seeds", int), ("tests", int), ("smallest", float), ("by_design", bool)])


@dataclass(frozen=True)
class Family:
    """A declared family of tests: the outcomes of those with results, over ``declared`` tests."""

    outcomes: list  # of Outcome (of Reach for time to accuracy)
    declared: int
    floor: HolmFloor | None

    @property
    def missing(self) -> int:
        return self.declared - len(self.outcomes)


def grid(runs: dict[int, dict], seeds: Sequence[int], phase: str | None = None, organ: int | None = None) -> np.ndarray:
    """``(seeds, cases)`` of the case-mean test Dice (or one organ's), only the cases of ``phase`` when given."""
    rows = []
    for seed in seeds:
        test = runs[seed]["test"]
        row = case_means(test) if organ is None else np.array(
            [np.nan if r[organ] is None else r[organ] for r in test["dice"]], dtype=np.float64)
        if phase is not None:
            row = row[np.asarray(case_phases(runs[seed]) or [None] * len(row)) == phase]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


def organ_means(found: dict[int, dict]) -> list[float]:
    """Mean test Dice of each organ (``test["classes"]`` order) over the seeds and cases of ``{seed: record}``."""
    classes = next(iter(found.values()))["test"]["classes"]
    return [float(np.nanmean(grid(found, sorted(found), organ=i))) for i in range(len(classes))]


def seed_differences(a: dict[int, dict], b: dict[int, dict]) -> dict[int, float]:
    """``{seed: mean test Dice of a minus b}`` over the seeds both ran."""
    return {s: float(np.nanmean(grid(a, [s])) - np.nanmean(grid(b, [s]))) for s in sorted(set(a) & set(b))}


def compare(a: dict[int, dict], b: dict[int, dict], phase: str | None = None,
            organ: str | None = None) -> tuple[Estimate, float, int] | None:
    """``a`` against ``b`` paired by seed (one ``organ``'s Dice, else the case means): (difference, Wilcoxon p (NaN
    with 1 seed), seeds); ``None`` if no pair."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    index = None if organ is None else list(a[seeds[0]]["test"]["classes"]).index(organ)
    grid_a, grid_b = grid(a, seeds, phase, index), grid(b, seeds, phase, index)
    if grid_a.size == 0:
        return None
    p = paired_wilcoxon(np.nanmean(grid_a, axis=1), np.nanmean(grid_b, axis=1)) if len(seeds) > 1 else float("nan")
    return crossed_bootstrap(grid_a, grid_b), p, len(seeds)


def holm_over_declared(p_values: Sequence[float], declared: int) -> list[float]:
    """Holm-adjusted ``p_values`` in a family of ``declared`` tests (those without results yet as p = 1)."""
    return holm([*p_values, *[1.0] * max(0, declared - len(p_values))])[: len(p_values)]


def smallest_holm_p(seeds: int, declared: int) -> float:
    """The smallest Holm-adjusted p a family of ``declared`` tests can reach with ``seeds`` paired seeds: the smallest
    two-sided exact Wilcoxon p, ``2 / 2**seeds``, times ``declared`` (1 below :data:`MIN_SEEDS`)."""
    return min(1.0, declared * 2 / 2**seeds) if seeds >= MIN_SEEDS else 1.0


def holm_floor(seeds: int, declared: int, planned_seeds: int | None) -> HolmFloor | None:
    """Whether a family of ``declared`` tests cannot reach :data:`ALPHA` with ``seeds`` seeds
    (:func:`smallest_holm_p`); ``None`` when it can, or when no seeds are planned."""
    if planned_seeds is None or smallest_holm_p(seeds, declared) < ALPHA:
        return None
    return HolmFloor(seeds, declared, smallest_holm_p(seeds, declared),
                     smallest_holm_p(max(seeds, planned_seeds), declared) >= ALPHA)


def run_family(runs: pd.DataFrame, tests: Sequence[Test]) -> list[Outcome]:
    """The tests of one family that have paired runs, each with its Holm p over all ``tests``."""
    done = []
    for test in tests:
        a, b = (runs_of(runs, arm, test.setting, test.probe) for arm in (test.method, test.baseline))
        if (result := compare(a, b, test.phase, test.organ)) is not None:
            done.append((test, result))
    adjusted = holm_over_declared([p for _, (_, p, _) in done], len(tests))
    return [Outcome(test, d, p, h, n) for (test, (d, p, n)), h in zip(done, adjusted)]


def family(runs: pd.DataFrame, tests: Sequence[Test], planned_seeds: int | None) -> Family:
    """:func:`run_family` with its size and whether it can reach :data:`ALPHA` (:func:`holm_floor`)."""
    outcomes = run_family(runs, tests)
    floor = holm_floor(max(o.seeds for o in outcomes), len(tests), planned_seeds) if outcomes else None
    return Family(outcomes, len(tests), floor)


def primary_family() -> list[Test]:
    """The 4 primary tests: each primary method against ``scratch`` at 1 and 2 labelled volumes."""
    return [Test(m, REFERENCE, s) for s in PRIMARY_SETTINGS for m in PRIMARY_METHODS]


def secondary_families(keys: set[tuple[str, str, bool]]) -> dict[str, list[Test]]:
    """The secondary families among the planned ``(arm, setting, probe)``: the method against the other pretraining
    at 1 and 2 volumes, and every pretrained arm planned at 4 (the paper's own setting last) against ``scratch``."""
    more = sorted({a for a, s, probe in keys if s == MORE_LABELS_SETTING and not probe and a != REFERENCE
                   and not is_atlas(a)}, key=lambda arm: (arm == PAPER_ARM, arm))
    return {
        "against the other pretraining baselines": [
            Test(m, b, s) for s in PRIMARY_SETTINGS for m in PRIMARY_METHODS for b in SECONDARY_BASELINES
            if (m, s, False) in keys and (b, s, False) in keys],
        f"{MORE_LABELS_SETTING}, and the paper's own setting (`{PAPER_ARM}`)": [
            Test(a, REFERENCE, MORE_LABELS_SETTING) for a in more if (REFERENCE, MORE_LABELS_SETTING, False) in keys],
    }


def probe_family(keys, setting: str | None) -> list[Test]:
    """Every pretrained arm's frozen-encoder probe among ``keys`` against a frozen random encoder's (``scratch``)."""
    return [Test(arm, REFERENCE, setting, probe=True) for (arm, s, probe) in sorted(keys)
            if probe and s == setting and arm != REFERENCE]


#: Time to accuracy: on how many of the ``paired`` seeds (both runs validate) ``arm`` reaches the best validation Dice
#: of ``scratch`` with the same seed; medians over the seeds that reach it (``None``: none) of its steps and seconds
#: to it and of the ratio of its steps to ``scratch``'s steps to its best; ``scratch``'s medians; on how many seeds it
#: got there in fewer steps than ``scratch``; the raw and Holm-adjusted Wilcoxon p.
Reach = NamedTuple("Reach", [("arm", str), ("setting", str), ("paired", int), ("reached", int),
                             ("steps", float | None), ("seconds", float | None), ("ratio", float | None),
                             ("scratch_steps", float), ("scratch_seconds", float | None), ("faster", int), ("p", float),
                             ("holm_p", float)])


def _median(values: list) -> float | None:
    return float(np.median(values)) if values else None


def reach(runs: pd.DataFrame, arm: str, setting: str, baseline: str = REFERENCE) -> Reach | None:
    """:class:`Reach` of ``arm`` in ``setting`` (``None``: no pair). The Wilcoxon test pairs the arm's steps with
    the ``baseline``'s (``scratch``'s) to its best; a seed that never reaches it ranks slower than every seed that
    does."""
    scratch, ours = runs_of(runs, baseline, setting), runs_of(runs, arm, setting)
    pairs = []  # (arm's first reaching point or None, scratch's best point)
    for seed in sorted(set(ours) & set(scratch)):
        mine = [p for p in RunResult("finetune", ours[seed]).validation if p.dice is not None]
        theirs = [p for p in RunResult("finetune", scratch[seed]).validation if p.dice is not None]
        if mine and theirs:
            target = max(theirs, key=lambda p: p.dice)
            pairs.append((next((p for p in mine if p.dice >= target.dice), None), target))
    if not pairs:
        return None
    hit = [(a, b) for a, b in pairs if a is not None]
    slowest = max((abs(a.step - b.step) for a, b in hit), default=0) + 1
    ranked = [b.step + slowest if a is None else a.step for a, b in pairs]
    targets = [b.step for _, b in pairs]
    p = paired_wilcoxon(ranked, targets) if len(pairs) > 1 else float("nan")
    seconds = [a.seconds for a, _ in hit if a.seconds is not None]
    scratch_seconds = [b.seconds for _, b in pairs if b.seconds is not None]
    return Reach(arm, setting, len(pairs), len(hit), _median([a.step for a, _ in hit]), _median(seconds),
                 _median([a.step / max(b.step, 1) for a, b in hit]), float(np.median(targets)),
                 _median(scratch_seconds), sum(r < t for r, t in zip(ranked, targets)), p, float("nan"))


def declared_reaches(keys, settings=()) -> list[tuple[str, str]]:
    """``(arm, setting)`` of every pretrained arm's planned fine-tuning with a ``scratch`` run in its setting."""
    pairs = {(a, s) for a, s, probe in keys
             if not probe and a != REFERENCE and not is_atlas(a) and (REFERENCE, s, False) in keys}
    order = {s: i for i, s in enumerate(settings)}
    return sorted(pairs, key=lambda pair: (order.get(pair[1], len(order)), pair[1], pair[0]))


def reach_family(runs: pd.DataFrame, pairs: list[tuple[str, str]], planned_seeds: int | None,
                 baseline: str = REFERENCE) -> Family:
    """:func:`reach` of each declared ``(arm, setting)`` with results (against ``baseline``), Holm-adjusted over all
    ``pairs``."""
    reaches = [r for arm, setting in pairs if (r := reach(runs, arm, setting, baseline)) is not None]
    adjusted = holm_over_declared([r.p for r in reaches], len(pairs))
    floor = holm_floor(max(r.paired for r in reaches), len(pairs), planned_seeds) if reaches else None
    return Family([r._replace(holm_p=h) for r, h in zip(reaches, adjusted)], len(pairs), floor)


def budget_fraction_family(runs: pd.DataFrame, pairs: list[tuple[str, str]], planned_seeds: int | None) -> Family:
    """Each declared ``(arm, setting)`` against ``scratch`` at every recorded fraction of ``scratch``'s best epoch
    (the settings are named ``"<setting> @ <fraction>"``)."""
    records = {}
    for row in runs[(runs.stage == "finetune") & ~runs.probe].itertuples():
        for point in (row.record.get("budget_fractions") or {}).get("points", []):
            fraction, test = float(point["fraction"]), point["test"]
            config = {**row.record["config"], "setting": f"{row.setting} @ {fraction:g}"}
            records[f"{row.key}@{fraction:g}"] = {**row.record, "test": test, "config": config}
    fractions = table(records)
    levels = sorted({float(s.rsplit(" @ ", 1)[1]) for s in fractions.setting}) if len(fractions) else []
    tests = [Test(arm, REFERENCE, f"{setting} @ {f:g}") for arm, setting in pairs for f in levels]
    return family(fractions, tests, planned_seeds)


def families(runs: pd.DataFrame, size, keys: set[tuple[str, str, bool]], settings: list[str],
             phases: list[str]) -> dict:
    """Every declared family: ``primary``, ``secondary`` (``{title: Family}``), ``per phase`` (the primary tests in
    each of ``phases``), ``probe``, ``budget fractions`` and ``time to accuracy`` (its outcomes :class:`Reach`)."""
    seeds, pairs = len(size.seeds) or None, declared_reaches(keys, settings)
    return {"primary": family(runs, primary_family(), seeds),
            "secondary": {title: family(runs, tests, seeds) for title, tests in secondary_families(keys).items()},
            "per phase": family(runs, [Test(t.method, t.baseline, t.setting, phase=p) for p in phases
                                       for t in primary_family()], seeds),
            "probe": family(runs, probe_family(keys, size.probe_setting), len(size.probe_seeds) or None),
            "budget fractions": budget_fraction_family(runs, pairs, seeds),
            "time to accuracy": reach_family(runs, pairs, seeds)}
