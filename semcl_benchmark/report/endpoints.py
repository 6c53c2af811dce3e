"""The endpoints that ``docs/PROTOCOL.md`` declares for benchmark v2, tested as families with Holm's correction.

The primary endpoint: mean test Dice at the validation plateau, each of :data:`PRIMARY_METHODS` against
:data:`REFERENCE`, in each of :data:`PRIMARY_SETTINGS` (a family of 4 tests). Secondary: the same methods against
:data:`SECONDARY_BASELINES`; every arm against ``scratch`` at :data:`MORE_LABELS_SETTING`; the paper's own setting
(:data:`PAPER_ARM`, pretrained on the labelled volumes themselves); each of these per phase bucket of the test cases.

Every test is a paired two-sided Wilcoxon signed-rank test over seeds on the runs' mean test Dice; every interval a
crossed bootstrap over seeds and the shared test cases (:func:`~semcl_benchmark.statistics.crossed_bootstrap`);
every table's p-values are Holm-adjusted over the tests of that table (its family), shown next to the raw p.

Roles of arms and settings are named here once; the size's protocol entry plans runs under these names:
:data:`ATLAS_PREFIX` (arms that copy or vote labelled maps, no training), :data:`UPPER_BOUND_SETTING` (``scratch``
with all training volumes labelled), the probe of :data:`REFERENCE` (a frozen *random* encoder: the probes' control).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..statistics import Estimate, crossed_bootstrap, holm, paired_wilcoxon
from .comparison import MIN_SEEDS_FOR_INTERVAL, case_means, format_difference, format_mean_dice, format_p
from .records import case_phases, deviations

__all__ = [
    "ALPHA",
    "ATLAS_PREFIX",
    "Outcome",
    "PAPER_ARM",
    "PRIMARY_METHODS",
    "PRIMARY_SETTINGS",
    "REFERENCE",
    "Test",
    "UPPER_BOUND_SETTING",
    "deviations_section",
    "family_note",
    "holm_floor",
    "holm_over_declared",
    "is_atlas",
    "outcome_table",
    "per_phase",
    "planned_keys",
    "primary_family",
    "probe_section",
    "probe_family",
    "run_family",
    "secondary_families",
    "too_few_seeds",
]

ALPHA = 0.05
"""Family-wise level: a test is significant when its Holm-adjusted p is below it. With 8 seeds the smallest two-sided
Wilcoxon p is 2/2**8 = 0.0078, so the smallest Holm p over the 4 primary tests is 0.031: 0.01 could never be met."""

REFERENCE = "scratch"
PRIMARY_METHODS = ("semcl_exact", "semcl_coarse")
PRIMARY_SETTINGS = ("finetune_1", "finetune_2")
SECONDARY_BASELINES = ("simclr", "supervised")
MORE_LABELS_SETTING = "finetune_4"
PAPER_ARM = "semcl_labelled"
"""The paper's own setting: semantic-aware pretraining on the labelled volumes of the seed, then fine-tuning on them."""
UPPER_BOUND_SETTING = "finetune_all"
ATLAS_PREFIX = "atlas"


def is_atlas(arm: str) -> bool:
    """Whether ``arm`` is an atlas baseline (labelled maps copied or voted onto the test case, no training)."""
    return arm.startswith(ATLAS_PREFIX)


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
    """A test's result: paired difference (crossed bootstrap), raw and Holm-adjusted Wilcoxon p, paired seeds."""

    test: Test
    difference: Estimate
    p: float
    holm_p: float
    seeds: int

    @property
    def significant(self) -> bool:
        return self.holm_p < ALPHA

    @property
    def direction(self) -> str:
        """``gain``, ``loss`` (significant at :data:`ALPHA` after Holm), ``no significant difference``, or
        ``not testable: 1 seed`` (no Wilcoxon test with a single pair)."""
        if self.seeds < 2:
            return f"not testable: {self.seeds} seed"
        if not self.significant:
            return "no significant difference"
        return "gain" if self.difference.mean > 0 else "loss"


def case_grid(runs: dict[int, dict], seeds: Sequence[int], phase: str | None = None) -> np.ndarray:
    """``(seeds, cases)`` case-mean test Dice; only the cases of ``phase`` when given (empty if not recorded)."""
    rows = []
    for seed in seeds:
        means = case_means(runs[seed])
        if phase is not None:
            means = means[np.asarray(case_phases(runs[seed]) or [None] * len(means)) == phase]
        rows.append(means)
    return np.asarray(rows, dtype=np.float64)


def _outcome(finetunes, test: Test) -> tuple[Estimate, float, int] | None:
    a = finetunes.get((test.method, test.setting, test.probe), {})
    b = finetunes.get((test.baseline, test.setting, test.probe), {})
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    grid_a, grid_b = case_grid(a, seeds, test.phase), case_grid(b, seeds, test.phase)
    if grid_a.size == 0:
        return None
    p = paired_wilcoxon(np.nanmean(grid_a, axis=1), np.nanmean(grid_b, axis=1)) if len(seeds) > 1 else float("nan")
    return crossed_bootstrap(grid_a, grid_b), p, len(seeds)


def holm_over_declared(p_values: Sequence[float], declared: int) -> list[float]:
    """Holm-adjusted ``p_values`` in a family of ``declared`` tests: a declared test without results yet counts as
    p = 1, so a partial family is never corrected over fewer tests than the protocol declares."""
    return holm([*p_values, *[1.0] * max(0, declared - len(p_values))])[: len(p_values)]


def run_family(finetunes, tests: Sequence[Test]) -> list[Outcome]:
    """The tests of one declared family that have paired runs, each with its Holm-adjusted p over all ``tests`` (those
    without results yet counted as p = 1: :func:`holm_over_declared`)."""
    done = [(test, result) for test in tests if (result := _outcome(finetunes, test)) is not None]
    adjusted = holm_over_declared([p for _, (_, p, _) in done], len(tests))
    return [Outcome(test, difference, p, holm_p, n) for (test, (difference, p, n)), holm_p in zip(done, adjusted)]


def family_note(outcomes: Sequence, declared: int, planned_seeds: int | None = None, seeds: int | None = None) -> str:
    """How a table's Holm correction was made: over the declared tests, and how many have no results yet; with
    ``planned_seeds`` (the seeds the protocol plans for the family), also whether the family's ``seeds`` (default:
    the most of any outcome's) can reach :data:`ALPHA` at all (:func:`holm_floor`)."""
    missing = declared - len(outcomes)
    note = (f"Holm over the {declared} declared {'test' if declared == 1 else 'tests'} of this family"
            + (f" ({missing} without results yet, counted as p = 1)." if missing else "."))
    if planned_seeds is None or not outcomes:
        return note
    return note + holm_floor(max(o.seeds for o in outcomes) if seeds is None else seeds, declared, planned_seeds)


def planned_keys(planned) -> set[tuple[str, str, bool]]:
    """``(arm, setting, probe)`` of every planned fine-tuning run: the declared comparisons are made among these."""
    return {(r.config["arm"], r.config["setting"], bool(r.config["probe"])) for r in planned
            if r.config["stage"] == "finetune"}


def primary_family() -> list[Test]:
    """The 4 primary tests: each primary method against ``scratch`` at 1 and 2 labelled volumes."""
    return [Test(m, REFERENCE, s) for s in PRIMARY_SETTINGS for m in PRIMARY_METHODS]


def secondary_families(keys) -> dict[str, list[Test]]:
    """The secondary families by title, among the planned fine-tuning runs ``keys`` (``(arm, setting, probe)``): the
    method against the other pretraining baselines at 1 and 2 labelled volumes, and every pretrained arm planned at 4
    (the paper's own setting among them) against ``scratch``."""
    keys = set(keys)
    more = sorted({arm for arm, s, probe in keys if s == MORE_LABELS_SETTING and not probe and arm != REFERENCE
                   and not is_atlas(arm)}, key=lambda arm: (arm == PAPER_ARM, arm))
    return {
        "against the other pretraining baselines": [
            Test(m, b, s) for s in PRIMARY_SETTINGS for m in PRIMARY_METHODS for b in SECONDARY_BASELINES
            if (m, s, False) in keys and (b, s, False) in keys
        ],
        f"{MORE_LABELS_SETTING}, and the paper's own setting (`{PAPER_ARM}`)": [
            Test(a, REFERENCE, MORE_LABELS_SETTING) for a in more if (REFERENCE, MORE_LABELS_SETTING, False) in keys
        ],
    }


def probe_family(keys, setting: str | None) -> list[Test]:
    """Every pretrained arm's frozen-encoder probe among ``keys`` (planned or finished ``(arm, setting, probe)``)
    against the probe of a frozen random encoder (``scratch``)."""
    return [Test(arm, REFERENCE, setting, probe=True) for (arm, s, probe) in sorted(keys)
            if probe and s == setting and arm != REFERENCE]


def outcome_table(outcomes: Sequence[Outcome], by_phase: bool = False) -> list[str]:
    """A Markdown table of a family's outcomes: difference [95% CI], raw p, Holm p, seeds, what it shows; with a
    leading phase bucket column when ``by_phase``."""
    phase_head, phase_rule = ("| phase ", "| --- ") if by_phase else ("", "")
    lines = [f"{phase_head}| setting | method | baseline | difference [95% CI] | Wilcoxon p | Holm p | seeds "
             f"| at {ALPHA} (Holm) |", f"{phase_rule}| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        phase = f"| {o.test.phase} " if by_phase else ""
        lines.append(f"{phase}| {o.test.setting} | `{o.test.method}` | `{o.test.baseline}` "
                     f"| {format_difference(o.difference, o.seeds)} | {format_p(o.p)} | {format_p(o.holm_p)} "
                     f"| {o.seeds} | {o.direction} |")
    return lines


def per_phase(finetunes, tests: Sequence[Test], planned_seeds: int | None = None) -> list[str]:
    """The primary tests within each phase bucket of the test cases (one family: all phases and tests; the protocol
    plans ``planned_seeds`` for it)."""
    example = next((phases for runs in finetunes.values() for r in runs.values() if (phases := case_phases(r))), None)
    if example is None:
        return []
    # the test set is fixed: every run names the same cases and phases (a case without one is in no bucket)
    phases = sorted({p for p in example if p is not None})
    family = [Test(t.method, t.baseline, t.setting, phase=p) for p in phases for t in tests]
    outcomes = run_family(finetunes, family)
    if not outcomes:
        return []
    counts = {p: example.count(p) for p in phases}
    return ["## Per phase bucket (secondary; test cases grouped by `contrast_phase`)", "",
            "Test cases per phase: " + ", ".join(f"{p} {counts.get(p, 0)}" for p in phases)
            + f". {family_note(outcomes, len(family), planned_seeds)}", "",
            *outcome_table(outcomes, by_phase=True), ""]


def deviations_section(size) -> list[str]:
    """The size's recorded deviations from ``docs/PROTOCOL.md``: what changed after results existed, when, why."""
    entries = deviations(size)
    lines = ["## Deviations from the protocol", ""]
    if not entries:
        return lines + ["None recorded: the size's protocol entry lists no deviation from `docs/PROTOCOL.md`.", ""]
    lines += ["| date | what changed | reason |", "| --- | --- | --- |"]
    lines += [f"| {e['date']} | {e['text']} | {e['reason']} |" for e in entries]
    return lines + [""]


def too_few_seeds(outcomes: Sequence[Outcome], declared: int, planned_seeds: int | None = None) -> str:
    """:func:`holm_floor` for a family's outcomes (their most seeds); empty without outcomes."""
    return holm_floor(max(o.seeds for o in outcomes), declared, planned_seeds) if outcomes else ""


def holm_floor(seeds: int, declared: int, planned_seeds: int | None = None) -> str:
    """A note when no test of a family of ``declared`` tests could reach :data:`ALPHA` after Holm with ``seeds``
    paired seeds (the smallest two-sided Wilcoxon p is ``2 / 2**seeds``, times ``declared``); when not even all
    ``planned_seeds`` could reach it, the note says that the family's design cannot."""

    def smallest(n: int) -> float:
        return min(1.0, declared * 2 / 2**n) if n >= MIN_SEEDS_FOR_INTERVAL else 1.0

    if smallest(seeds) < ALPHA:
        return ""
    if planned_seeds is not None and smallest(max(seeds, planned_seeds)) >= ALPHA:
        why = (f"no test of this family can reach p < {ALPHA} even with all {planned_seeds} seeds the protocol plans "
               "for it, so read its intervals")
    else:
        why = f"this family cannot reach p < {ALPHA} until more seeds finish"
    tests = f"{declared} {'test' if declared == 1 else 'tests'}"
    return f" With {seeds} seeds and {tests} the smallest possible Holm p is {smallest(seeds):.4f}: {why}."


def probe_section(finetunes, size, keys=None) -> list[str]:
    """The frozen-encoder probes (decoder trained only) of every pretrained arm against a frozen random encoder; the
    family is the probes among ``keys`` (the planned runs; default: those with results)."""
    setting = size.probe_setting
    runs_by_arm = {arm: runs for (arm, s, probe), runs in finetunes.items() if probe and s == setting}
    if not runs_by_arm:
        return []
    lines = [f"## Frozen-encoder probe ({setting}: only the decoder trains; secondary)", "",
             f"The control is `{REFERENCE}`'s probe: a decoder trained on a frozen *random* encoder.", "",
             "| arm | test Dice [95% CI] | seeds |", "| --- | --- | --- |"]
    for arm, runs in sorted(runs_by_arm.items(), key=lambda item: item[0] != REFERENCE):
        label = f"`{arm}` (frozen random encoder)" if arm == REFERENCE else f"`{arm}`"
        lines.append(f"| {label} | {format_mean_dice(runs, crossed_bootstrap)} | {len(runs)} |")
    family = probe_family(finetunes if keys is None else keys, setting)
    outcomes = run_family(finetunes, family)
    if REFERENCE not in runs_by_arm:
        return lines + ["", f"No probe of a frozen random encoder (`{REFERENCE}`) has finished: no control yet.", ""]
    if not outcomes:
        return lines + ["", "No probe of a pretrained arm has finished: nothing to compare with the control yet.", ""]
    note = family_note(outcomes, len(family), len(size.probe_seeds) or None)
    return lines + ["", note, "", *outcome_table(outcomes), ""]
