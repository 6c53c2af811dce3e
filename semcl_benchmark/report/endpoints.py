"""Analyse: the endpoints that ``docs/PROTOCOL.md`` declares for benchmark v2, tested as families with Holm's correction.

The primary endpoint: mean test Dice at the validation plateau, each of :data:`PRIMARY_METHODS` against
:data:`REFERENCE` in each of :data:`PRIMARY_SETTINGS` (4 tests). Secondary: the same methods against
:data:`SECONDARY_BASELINES`; every pretrained arm against ``scratch`` at :data:`MORE_LABELS_SETTING` (the paper's own
setting, :data:`PAPER_ARM`, among them); the primary tests per phase bucket; the frozen probes against a frozen random
encoder. Every test is a paired two-sided Wilcoxon signed-rank test over seeds on the runs' mean test Dice, every
interval a crossed bootstrap over seeds and the shared test cases, every p Holm-adjusted over its family's declared
tests (a test without results yet counts as p = 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..statistics import Estimate, crossed_bootstrap, holm, paired_wilcoxon
from .load import case_means, case_phases, runs_of

__all__ = ["ALPHA", "DIRECTION", "Family", "HolmFloor", "Outcome", "Test", "family", "holm_floor", "is_atlas",
           "is_method", "primary_family", "probe_family", "run_family", "secondary_families"]

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
DIRECTION = {"gain": "gain", "loss": "loss", "none": "no significant difference", "untestable": "not testable: 1 seed"}
"""What each :attr:`Outcome.direction` says in words (the report's templates and the demo print these)."""


def is_atlas(arm: str) -> bool:
    """Whether ``arm`` copies or votes labelled maps onto the test case (no training)."""
    return arm.startswith("atlas")


def is_method(arm: str) -> bool:
    """Whether ``arm`` is one of the method's arms (else a baseline)."""
    return arm.startswith("semcl")


@dataclass(frozen=True)
class Test:
    """One declared comparison: ``method`` against ``baseline`` in ``setting`` (probe runs, one phase bucket)."""

    method: str
    baseline: str
    setting: str
    probe: bool = False
    phase: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A test's result: paired difference (crossed bootstrap), raw and Holm-adjusted Wilcoxon p, paired seeds, and
    what it shows: ``direction`` is ``gain`` or ``loss`` (Holm p < :data:`ALPHA`), ``none`` or ``untestable`` (1 seed)."""

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


@dataclass(frozen=True)
class HolmFloor:
    """No test of a family of ``tests`` can reach :data:`ALPHA` with ``seeds`` seeds (smallest Holm p ``smallest``);
    ``by_design``: not even with every seed the protocol plans."""

    seeds: int
    tests: int
    smallest: float
    by_design: bool


@dataclass(frozen=True)
class Family:
    """A declared family of tests: the outcomes of those with results, over ``declared`` tests."""

    outcomes: list[Outcome]
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


def compare(a: dict[int, dict], b: dict[int, dict], phase: str | None = None) -> tuple[Estimate, float, int] | None:
    """``a`` against ``b`` paired by seed: (difference, Wilcoxon p (NaN with 1 seed), seeds); ``None`` if no pair."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    grid_a, grid_b = grid(a, seeds, phase), grid(b, seeds, phase)
    if grid_a.size == 0:
        return None
    p = paired_wilcoxon(np.nanmean(grid_a, axis=1), np.nanmean(grid_b, axis=1)) if len(seeds) > 1 else float("nan")
    return crossed_bootstrap(grid_a, grid_b), p, len(seeds)


def holm_over_declared(p_values: Sequence[float], declared: int) -> list[float]:
    """Holm-adjusted ``p_values`` in a family of ``declared`` tests (those without results yet as p = 1)."""
    return holm([*p_values, *[1.0] * max(0, declared - len(p_values))])[: len(p_values)]


def holm_floor(seeds: int, declared: int, planned_seeds: int | None) -> HolmFloor | None:
    """Whether a family of ``declared`` tests cannot reach :data:`ALPHA` with ``seeds`` seeds (the smallest two-sided
    Wilcoxon p is ``2 / 2**seeds``, times ``declared``); ``None`` when it can, or when no seeds are planned."""

    def smallest(n: int) -> float:
        return min(1.0, declared * 2 / 2**n) if n >= MIN_SEEDS else 1.0

    if planned_seeds is None or smallest(seeds) < ALPHA:
        return None
    return HolmFloor(seeds, declared, smallest(seeds), smallest(max(seeds, planned_seeds)) >= ALPHA)


def run_family(runs: pd.DataFrame, tests: Sequence[Test]) -> list[Outcome]:
    """The tests of one family that have paired runs, each with its Holm p over all ``tests``."""
    done = []
    for test in tests:
        a, b = (runs_of(runs, arm, test.setting, test.probe) for arm in (test.method, test.baseline))
        if (result := compare(a, b, test.phase)) is not None:
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
