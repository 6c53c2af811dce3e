"""Benchmark v3's draws: a fixed test and validation set, and each seed's labelled volumes and pretraining pool, chosen
so that seeds share as little data as the subject count allows (``docs/PROTOCOL_v3.md``, section 3).

Given every subject's contrast phase bucket, :func:`draw_design` returns

    test          fixed, every bucket at least once, the buckets otherwise in the dataset's proportions
    validation    fixed, likewise, disjoint from the test set
    per seed      its labelled volumes, nested (``labelled[:1]`` is ``finetune_1``, ``labelled[:2]`` ``finetune_2``).
                  No case is labelled by two seeds: at 1 volume every seed uses another case, and the 2-volume sets
                  are disjoint. Within a seed group (the 8 seeds; the 2 tuning seeds) the first volumes are
                  phase-stratified (largest-remainder quotas of the training cases' buckets), and so are the second
                  volumes, each from another bucket than its seed's first where the quotas allow.
                  Its pretraining pool: never its own labelled volumes, chosen one case per seed in turn so that the
                  largest overlap between two seeds' training data (labelled volumes and pool) grows as little as
                  possible, then the pools' overlap, then how often a case is used, then the pool's phase mix.
                  A case another seed labels may be in a pool (it is unlabelled there): it counts as shared data.

Everything outside the test and validation sets is a *training case*. A draw is deterministic: the same phases, sizes
and ``seed`` give the same design. :func:`overlap_lower_bound` is the counting bound no design can beat (used to say
how close a design comes), :func:`min_subjects` the smallest subject count at which the seeds share nothing, and
:func:`realistic_phases` the buckets the ``realistic`` phantom preset gives its subjects, read from each subject's
random draws without painting it (the same draws :func:`semcl_phantoms.realistic_phantom.generate_realistic_phantom`
makes first). :func:`seed_datalists` turns a dataset's entries into every seed's datalist (the benchmark's v3 sizes,
``draws: {design: v3, ...}``). ``python -m semcl_benchmark.draws_v3`` prints the draw tables of the protocol (section 3).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

__all__ = [
    "DrawDesign",
    "SeedDraw",
    "draw_design",
    "min_subjects",
    "overlap_lower_bound",
    "overlap_table",
    "realistic_phases",
    "seed_datalists",
]

#: the bucket order in which phases are interleaved (the phantoms' buckets; others follow in sorted order)
BUCKET_ORDER = ("native", "arterial", "portal_venous", "delayed")
#: the 8 seeds of the tests and the 2 tuning seeds of the recipe selection (numbered apart so they are never confused)
MAIN_SEEDS = tuple(range(8))
TUNING_SEEDS = (100, 101)
#: the keys of a size's ``draws`` besides ``design``, as :func:`draw_design` names them (``seed``: the design's own)
DRAW_SIZES = ("test", "validation", "pool", "labelled", "seed")
#: greedy pool assignments tried (each with its own tie-breaking order); the best is kept
POOL_ATTEMPTS = 8


@dataclass(frozen=True)
class SeedDraw:
    """One seed's draw (case ids): ``labelled`` nested (``labelled[:k]`` is ``finetune_k``), its pretraining ``pool``."""

    seed: int
    labelled: tuple[str, ...]
    pool: tuple[str, ...]

    @property
    def training(self) -> tuple[str, ...]:
        """Every case this seed trains on: its labelled volumes and its pool (the upper bound labels all of them)."""
        return self.labelled + self.pool


@dataclass(frozen=True)
class DrawDesign:
    """The fixed ``test`` and ``validation`` sets, every seed's :class:`SeedDraw` and every case's phase bucket."""

    test: tuple[str, ...]
    validation: tuple[str, ...]
    seeds: tuple[SeedDraw, ...]
    phases: Mapping[str, str]

    def seed(self, seed: int) -> SeedDraw:
        """The draw of benchmark seed ``seed``."""
        for draw in self.seeds:
            if draw.seed == seed:
                return draw
        raise KeyError(f"seed {seed} is not in this design (seeds: {[d.seed for d in self.seeds]}).")

    def record(self, seed: int, labelled: int) -> dict[str, list[str]]:
        """What a result file of ``seed`` with ``labelled`` volumes records as its whole draw: case ids per part and
        every one of those cases' phase bucket (``phases``)."""
        draw = self.seed(seed)
        parts = {
            "labelled": list(draw.labelled[:labelled]),
            "pool": list(draw.pool),
            "validation": list(self.validation),
            "test": list(self.test),
        }
        return {**parts, "phases": {case: self.phases[case] for cases in parts.values() for case in cases}}

    def max_overlap(self, part: str = "training") -> int:
        """The largest number of cases two seeds share in ``part``: ``training`` (labelled + pool) or ``pool``."""
        sets = [set(getattr(draw, part)) for draw in self.seeds]
        return max((len(a & b) for a, b in combinations(sets, 2)), default=0)


def _ordered_buckets(buckets) -> list[str]:
    known = [b for b in BUCKET_ORDER if b in buckets]
    return known + sorted(set(buckets) - set(known))


def _quotas(available: Mapping[str, int], n: int, every_bucket: bool) -> dict[str, int]:
    """How many of ``n`` cases to take from each bucket: the buckets' shares of ``available`` (largest remainder).

    ``every_bucket``: each non-empty bucket at least once where ``n`` has room. Never more from a bucket than it has.
    """
    total = sum(available.values())
    present = [b for b in _ordered_buckets(available) if available[b] > 0]
    if n > total:
        raise ValueError(f"cannot take {n} cases from {total}.")
    quota = {b: int(every_bucket and n >= len(present)) for b in present}
    while sum(quota.values()) < n:
        open_buckets = [b for b in present if quota[b] < available[b]]
        quota[max(open_buckets, key=lambda b: n * available[b] / total - quota[b])] += 1
    return quota


def _interleave(quota: Mapping[str, int]) -> list[str]:
    """Buckets as a sequence with ``quota[b]`` of each, spread out (each bucket's i-th at (i + 0.5) / quota)."""
    keyed = []
    for rank, bucket in enumerate(_ordered_buckets(quota)):
        keyed += [((i + 0.5) / quota[bucket], rank, bucket) for i in range(quota[bucket])]
    return [bucket for *_, bucket in sorted(keyed)]


def _second_buckets(first: list[str], available: Mapping[str, int]) -> list[str]:
    """The buckets of the seeds' second volumes: stratified, and a shift of them that matches ``first`` least often."""
    seconds = _interleave(_quotas(available, len(first), every_bucket=False))
    shifts = [seconds[s:] + seconds[:s] for s in range(len(seconds))]
    return min(shifts, key=lambda shifted: sum(a == b for a, b in zip(first, shifted)))


class _Queues:
    """Each bucket's cases in a random order; cases are taken from the front, another bucket's when one runs out."""

    def __init__(self, phases: Mapping[str, str], rng: np.random.Generator):
        self.queues: dict[str, list[str]] = {}
        for case in sorted(phases):
            self.queues.setdefault(phases[case], []).append(case)
        for bucket, cases in self.queues.items():
            self.queues[bucket] = [cases[i] for i in rng.permutation(len(cases))]

    def counts(self) -> dict[str, int]:
        return {b: len(cases) for b, cases in self.queues.items()}

    def take(self, bucket: str) -> str:
        if not self.queues.get(bucket):
            bucket = max(_ordered_buckets(self.queues), key=lambda b: len(self.queues[b]))
        return self.queues[bucket].pop(0)

    def take_stratified(self, n: int, every_bucket: bool) -> list[str]:
        return [self.take(b) for b in _interleave(_quotas(self.counts(), n, every_bucket))]


def _labelled(queues: _Queues, seeds: Sequence[int], labelled: int) -> dict[int, list[str]]:
    """Each seed's labelled volumes, no case twice: each round (first volumes, second volumes, ...) stratified, a
    later round's buckets shifted so that a seed's next volume comes from another bucket than its previous one."""
    chosen: dict[int, list[str]] = {s: [] for s in seeds}
    previous = _interleave(_quotas(queues.counts(), len(seeds), every_bucket=True))
    for volume in range(labelled):
        buckets = previous if volume == 0 else _second_buckets(previous, queues.counts())
        for s, bucket in zip(seeds, buckets):
            chosen[s].append(queues.take(bucket))
        previous = buckets
    return chosen


def _pools(
    training: Sequence[str],
    labelled: Mapping[int, list[str]],
    pool: int,
    phases: Mapping[str, str],
    rng: np.random.Generator,
) -> dict[int, list[str]]:
    """Every seed's pool: one case per seed in turn, each the case that raises the worst overlaps least (module doc)."""
    seeds = list(labelled)
    data = {s: set(labelled[s]) for s in seeds}
    pools: dict[int, list[str]] = {s: [] for s in seeds}
    # who holds a case (in their training data, in their pool) and how many cases each pair of seeds shares
    in_data = {c: {s for s in seeds if c in data[s]} for c in training}
    in_pool: dict[str, set[int]] = {c: set() for c in training}
    shared_data = {(s, t): 0 for s in seeds for t in seeds}
    shared_pool = dict(shared_data)
    share = Counter(phases[c] for c in training)
    tie = {c: float(r) for c, r in zip(training, rng.random(len(training)))}
    for _ in range(pool):
        for s in seeds:
            others = [t for t in seeds if t != s]
            mix = Counter(phases[c] for c in pools[s])

            def cost(case: str, s: int = s, others: list[int] = others, mix: Counter = mix) -> tuple:
                worst_data = max((shared_data[s, t] + (t in in_data[case]) for t in others), default=0)
                worst_pool = max((shared_pool[s, t] + (t in in_pool[case]) for t in others), default=0)
                excess = mix[phases[case]] - len(pools[s]) * share[phases[case]] / len(training)
                return worst_data, worst_pool, len(in_data[case]), excess, tie[case]

            candidates = [c for c in training if c not in data[s]]
            if not candidates:
                raise ValueError(f"seed {s}: no training case is left for its pool of {pool}.")
            case = min(candidates, key=cost)
            for t in in_data[case]:
                shared_data[s, t] += 1
                shared_data[t, s] += 1
            for t in in_pool[case]:
                shared_pool[s, t] += 1
                shared_pool[t, s] += 1
            pools[s].append(case)
            data[s].add(case)
            in_data[case].add(s)
            in_pool[case].add(s)
    return pools


def _check(phases: Mapping[str, str], seeds: Sequence[int], labelled: int, pool: int, test: int, validation: int):
    buckets = set(phases.values())
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be different numbers, got {list(seeds)}.")
    if test < len(buckets) or validation < 1:
        raise ValueError(
            f"a test set of {test} cannot hold every contrast phase bucket ({', '.join(_ordered_buckets(buckets))}), "
            f"or a validation set of {validation} is empty: use a test set of at least {len(buckets)} and a validation "
            "set of at least 1."
        )
    training = len(phases) - test - validation
    if training < len(seeds) * labelled:
        raise ValueError(
            f"{len(phases)} subjects leave {training} training cases after a test set of {test} and a validation set "
            f"of {validation}, but {len(seeds)} seeds with {labelled} labelled volumes each need {len(seeds) * labelled} "
            f"different cases (no case labelled by two seeds): use at least {test + validation + len(seeds) * labelled} "
            "subjects."
        )
    if training - labelled < pool:
        raise ValueError(
            f"a pretraining pool of {pool} cannot be drawn from the {training - labelled} training cases a seed does "
            f"not label: use at least {test + validation + labelled + pool} subjects (with overlapping pools) or a "
            "smaller pool."
        )


def draw_design(
    phases: Mapping[str, str],
    seeds: Sequence[int] = MAIN_SEEDS,
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    labelled: int = 2,
    pool: int = 12,
    test: int = 32,
    validation: int = 8,
    seed: int = 0,
) -> DrawDesign:
    """The fixed test and validation sets and every seed's draw (module docstring).

    Args:
        phases: every subject's case id -> its contrast phase bucket (e.g. :func:`realistic_phases`).
        seeds: the benchmark seeds of the tests.
        tuning_seeds: the seeds of the recipe selection, drawn like the others and sharing no labelled case with them.
        labelled: labelled volumes per seed, nested (the largest setting: 2 gives ``finetune_1`` and ``finetune_2``).
        pool: cases in every seed's pretraining pool.
        test: cases of the fixed test set (every bucket at least once).
        validation: cases of the fixed validation set (every bucket at least once where it has room).
        seed: the design's own seed (random order within each bucket and the pools' tie-breaking).

    Raises:
        ValueError: the subjects cannot give every seed different labelled volumes, a pool of ``pool`` cases outside
            them, and a test set that holds every bucket; the message names the smallest subject count that can.
    """
    every = list(seeds) + list(tuning_seeds)
    _check(phases, every, labelled, pool, test, validation)
    rng = np.random.default_rng(np.random.SeedSequence((seed, 3)))
    queues = _Queues(phases, rng)
    test_cases = queues.take_stratified(test, every_bucket=True)
    validation_cases = queues.take_stratified(validation, every_bucket=validation >= len(queues.queues))
    chosen = _labelled(queues, seeds, labelled)
    chosen.update(_labelled(queues, tuning_seeds, labelled))
    held_out = set(test_cases) | set(validation_cases)
    training = [c for c in sorted(phases) if c not in held_out]
    bounds = (
        overlap_lower_bound(len(training), len(every), labelled + pool),
        overlap_lower_bound(len(training), len(every), pool),
    )
    best = None
    for attempt in range(POOL_ATTEMPTS):
        pools = _pools(
            training, chosen, pool, phases, np.random.default_rng(np.random.SeedSequence((seed, 3, attempt)))
        )
        design = DrawDesign(
            tuple(test_cases),
            tuple(validation_cases),
            tuple(SeedDraw(s, tuple(chosen[s]), tuple(pools[s])) for s in every),
            dict(phases),
        )
        score = (design.max_overlap("training"), design.max_overlap("pool"), _sum_of_squares(design))
        if best is None or score < best[0]:
            best = (score, design)
        if score[:2] == bounds:  # no design shares less
            break
    return best[1]


def seed_datalists(
    entries: Sequence[Mapping], draws: Mapping, seeds: Sequence[int], tuning_seeds: Sequence[int] = ()
) -> dict[int, dict]:
    """Every seed's datalist (tuning seeds included) from the :func:`draw_design` of a dataset's entries.

    A datalist has the keys the bundle's workflows read, lists of the dataset's entries: ``pretrain`` (the seed's
    pool), ``finetune_1`` ... ``finetune_<labelled>`` (nested), ``finetune_all`` (the seed's training cases: labelled
    volumes and pool), ``validation`` and ``test``; and ``draw``, the seed's whole draw with every case's phase bucket
    (:meth:`DrawDesign.record` at its largest labelled setting).

    Args:
        entries: the dataset's cases (``image``, ``label``, ``contrast_phase``; a case without a phase is in bucket
            ``all``); a case's id is its image file's name without extensions.
        draws: a size's ``draws``: ``design`` (``v3``) and :data:`DRAW_SIZES` (``seed`` defaults to 0).
        seeds: the benchmark seeds; with ``tuning_seeds`` they decide the design, so always the size's own.
        tuning_seeds: the seeds of the recipe selection.

    Raises:
        ValueError: ``draws`` is not a v3 design, or the dataset cannot give it (:func:`draw_design` names why).
    """
    from .run_records import case_id

    unknown = set(draws) - {"design", *DRAW_SIZES}
    if draws.get("design") != "v3" or unknown:
        raise ValueError(f"draws: a v3 design is {{design: v3, {', '.join(DRAW_SIZES)}}}, got {dict(draws)!r}.")
    by_case = {case_id(entry["image"]): dict(entry) for entry in entries}
    phases = {case: str(entry.get("contrast_phase", "all")) for case, entry in by_case.items()}
    design = draw_design(phases, seeds, tuning_seeds, **{k: draws[k] for k in DRAW_SIZES if k in draws})
    labelled = len(design.seeds[0].labelled)
    datalists = {}
    for draw in design.seeds:
        datalist = {"pretrain": [by_case[c] for c in draw.pool]}
        datalist.update({f"finetune_{k}": [by_case[c] for c in draw.labelled[:k]] for k in range(1, labelled + 1)})
        datalist["finetune_all"] = [by_case[c] for c in draw.training]
        datalist["validation"] = [by_case[c] for c in design.validation]
        datalist["test"] = [by_case[c] for c in design.test]
        datalist["draw"] = design.record(draw.seed, labelled)
        datalists[draw.seed] = datalist
    return datalists


def _sum_of_squares(design: DrawDesign) -> int:
    sets = [set(draw.training) for draw in design.seeds]
    return sum(len(a & b) ** 2 for a, b in combinations(sets, 2))


def overlap_lower_bound(training_cases: int, seeds: int, per_seed: int) -> int:
    """The smallest possible largest overlap of ``seeds`` sets of ``per_seed`` cases out of ``training_cases``.

    Counting: the pairs' overlaps add up to the sum over cases of C(uses, 2), smallest when every case is used
    equally often; the largest of the C(seeds, 2) pairs is at least their mean.
    """
    slots = seeds * per_seed
    uses, extra = divmod(slots, training_cases)
    shared = extra * math.comb(uses + 1, 2) + (training_cases - extra) * math.comb(uses, 2)
    return math.ceil(shared / math.comb(seeds, 2))


def realistic_phases(num: int, seed: int = 0) -> dict[str, str]:
    """The phase bucket of each of ``num`` ``realistic`` phantoms of generator seed ``seed`` (``phantom_000``, ...).

    Read from each subject's first random draws (:class:`semcl_phantoms.realistic_subject.RealisticSubject`), which do
    not depend on the image size, without painting the subject.
    """
    from semcl_phantoms.realistic_preset import REALISTIC
    from semcl_phantoms.realistic_subject import RealisticSubject

    return {
        f"phantom_{i:03d}": RealisticSubject(REALISTIC, np.random.default_rng(np.random.SeedSequence((seed, i)))).phase
        for i in range(num)
    }


def overlap_table(subject_counts: Sequence[int], **sizes) -> list[dict]:
    """For each subject count, the design's largest overlaps and their lower bounds (``realistic`` phases, seed 0).

    ``sizes``: :func:`draw_design`'s keyword arguments (pool, test, validation, labelled, seeds, tuning_seeds).
    """
    rows = []
    for num in subject_counts:
        design = draw_design(realistic_phases(num), **sizes)
        training = num - len(design.test) - len(design.validation)
        per_seed = len(design.seeds[0].training)
        rows.append(
            {
                "subjects": num,
                "training_cases": training,
                "max_training_overlap": design.max_overlap("training"),
                "training_bound": overlap_lower_bound(training, len(design.seeds), per_seed),
                "max_pool_overlap": design.max_overlap("pool"),
                "pool_bound": overlap_lower_bound(training, len(design.seeds), len(design.seeds[0].pool)),
                "per_seed": per_seed,
            }
        )
    return rows


def min_subjects(part: str = "training", limit: int = 1000, **sizes) -> int:
    """The smallest subject count (``realistic`` phases) whose design shares no case between seeds in ``part``.

    ``part``: ``training`` (labelled volumes and pools) or ``pool`` (pools only); ``sizes`` as for :func:`draw_design`.
    The search starts where the counting bound (:func:`overlap_lower_bound`) first allows no overlap: below it no
    design can share nothing, so the answer is exact whenever the design meets the bound there.

    Raises:
        ValueError: no count up to ``limit`` gives such a design.
    """
    full = {"labelled": 2, "pool": 12, "test": 32, "validation": 8, "seeds": MAIN_SEEDS, "tuning_seeds": TUNING_SEEDS}
    full.update(sizes)
    count = len(full["seeds"]) + len(full["tuning_seeds"])
    per_seed = full["pool"] + (full["labelled"] if part == "training" else 0)
    start = full["test"] + full["validation"] + max(count * per_seed, count * full["labelled"])
    for num in range(start, limit + 1):
        try:
            if draw_design(realistic_phases(num), **sizes).max_overlap(part) == 0:
                return num
        except ValueError:
            continue
    raise ValueError(f"no subject count up to {limit} gives seeds that share no case in their {part}.")


def main(argv: Sequence[str] | None = None) -> None:
    """Print the overlap table and the smallest subject counts for disjoint pools and disjoint training data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[60, 90, 120, 150, 160, 180])
    parser.add_argument("--pool", type=int, nargs="+", default=[12])
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--validation", type=int, default=8)
    args = parser.parse_args(argv)
    for pool in args.pool:
        sizes = {"pool": pool, "test": args.test, "validation": args.validation}
        print(
            f"pool {pool}, test {args.test}, validation {args.validation}, seeds {len(MAIN_SEEDS)} + "
            f"{len(TUNING_SEEDS)} tuning, 2 labelled volumes each"
        )
        print("| subjects | training cases | max shared training cases (bound) | max shared pool cases (bound) |")
        print("| ---: | ---: | ---: | ---: |")
        for row in overlap_table(args.subjects, **sizes):
            print(
                f"| {row['subjects']} | {row['training_cases']} | {row['max_training_overlap']} of "
                f"{row['per_seed']} ({row['training_bound']}) | {row['max_pool_overlap']} of {pool} "
                f"({row['pool_bound']}) |"
            )
        print(
            f"disjoint pools from {min_subjects('pool', **sizes)} subjects, disjoint training data from "
            f"{min_subjects('training', **sizes)}"
        )


if __name__ == "__main__":
    main()
