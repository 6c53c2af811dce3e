"""Seeds as draws: each seed's labelled volumes and pretraining pool, around one fixed test and validation set.

A dataset's cases (``dataset.json``'s ``training`` entries) are split once, whatever the seed, into

    test               fixed, at least one case of every contrast phase bucket (where the dataset records phases)
    validation         fixed, disjoint from the test set
    training pool      the cases labelled volumes are drawn from; ``finetune_all`` (the upper bound) is all of it
    unlabelled pool    the rest; each seed's pretraining pool is a subset of it, the same size for every seed

and every benchmark seed then draws its own labelled volumes (``finetune_1`` inside ``finetune_2`` inside
``finetune_4`` ...) from the training pool, stratified so that the contrast phase buckets vary among them (a second
volume from another bucket than the first where the pool allows, and so on), and its own pretraining pool. The seed's
datalist (:func:`seed_datalist`) has the keys the bundle's workflows read (``pretrain``, ``finetune_<k>``,
``finetune_all``, ``validation``, ``test``), each a list of the dataset's entries (``image``, ``label`` and, for
phantoms, ``contrast_phase`` and ``contrast_time_s``).

The fixed split interleaves the buckets in proportion to their sizes (the first case of every bucket first), so the
test set covers every bucket and the validation set and the pools keep the dataset's phase mix.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PHASE_KEY", "UPPER_BOUND", "FixedSplits", "fixed_splits", "labelled_counts", "seed_datalist"]

PHASE_KEY = "contrast_phase"
"""The entry key of a case's contrast phase bucket (phantoms record it; a user's dataset may not)."""

UPPER_BOUND = "finetune_all"
"""The setting in which every case of the training pool is labelled."""

_SETTING = re.compile(r"finetune_(\d+)")


@dataclass(frozen=True)
class FixedSplits:
    """The seed-independent part of the split: test, validation, training pool, unlabelled pool (dataset entries)."""

    test: list[dict]
    validation: list[dict]
    training_pool: list[dict]
    unlabelled_pool: list[dict]


def _bucket(entry: Mapping) -> str:
    return str(entry.get(PHASE_KEY, "all"))


def _stratified_order(items: Sequence[Mapping], rng: np.random.Generator) -> list[int]:
    """Indices of ``items``: every bucket's first case first, then the buckets interleaved in proportion to their size.

    Within a bucket the order is random; the ``i``-th case of a bucket of ``n`` is placed at ``(i + 0.5) / n`` of the
    whole order, so every prefix holds the buckets about in the dataset's proportions.
    """
    buckets: dict[str, list[int]] = {}
    for index in rng.permutation(len(items)):
        buckets.setdefault(_bucket(items[index]), []).append(int(index))
    keyed = []
    for members in buckets.values():
        for rank, index in enumerate(members):
            keyed.append((-1.0 if rank == 0 else (rank + 0.5) / len(members), rng.random(), index))
    return [index for *_, index in sorted(keyed)]


def fixed_splits(
    items: Sequence[Mapping], test: int, validation: int, training_pool: int, seed: int = 0
) -> FixedSplits:
    """Split the dataset's entries ``items`` once: test, validation, training pool and the unlabelled rest.

    Args:
        items: the dataset's entries (``image``, ``label``, optionally ``contrast_phase``), in a fixed order.
        test: cases in the test set (at least the number of phase buckets, so that every bucket is in it).
        validation: cases in the validation set.
        training_pool: cases labelled volumes are drawn from (the upper bound labels all of them).
        seed: the split's seed (the dataset's, not a benchmark seed: the split is the same for every seed).

    Raises:
        ValueError: the dataset has too few cases, or the test set cannot hold every phase bucket.
    """
    counts = {"test": test, "validation": validation, "training_pool": training_pool}
    for name, count in counts.items():
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"splits: {name} must be a whole number >= 1, got {count!r}.")
    if sum(counts.values()) > len(items):
        raise ValueError(
            f"splits: test {test} + validation {validation} + training_pool {training_pool} = {sum(counts.values())} "
            f"cases, but the dataset has {len(items)}; use a dataset with more cases or smaller splits."
        )
    buckets = Counter(_bucket(entry) for entry in items)
    if len(buckets) > test:
        raise ValueError(
            f"splits: a test set of {test} cannot hold every contrast phase bucket ({', '.join(sorted(buckets))}); "
            f"use a test set of at least {len(buckets)}."
        )
    order = [dict(items[i]) for i in _stratified_order(items, np.random.default_rng(np.random.SeedSequence((seed, 21))))]
    ends = np.cumsum([test, validation, training_pool])
    return FixedSplits(order[: ends[0]], order[ends[0] : ends[1]], order[ends[1] : ends[2]], order[ends[2] :])


def labelled_counts(settings: Sequence[str]) -> list[int]:
    """The labelled volume counts of settings named ``finetune_<k>`` (``finetune_all`` adds none).

    Raises:
        ValueError: a setting named otherwise.
    """
    counts = []
    for setting in settings:
        match = _SETTING.fullmatch(setting)
        if match is None and setting != UPPER_BOUND:
            raise ValueError(
                f"setting {setting!r}: with seeds as draws a setting is finetune_<k> (k labelled volumes drawn per "
                f"seed) or {UPPER_BOUND} (the whole training pool)."
            )
        if match is not None:
            counts.append(int(match.group(1)))
    return sorted(set(counts))


def _stratified_draw(pool: Sequence[Mapping], rng: np.random.Generator) -> list[dict]:
    """All of ``pool`` in the order a seed labels it: each next case from a bucket drawn least often so far."""
    remaining = [dict(pool[i]) for i in rng.permutation(len(pool))]
    drawn: list[dict] = []
    used: Counter = Counter()
    while remaining:
        pick = min(range(len(remaining)), key=lambda i: (used[_bucket(remaining[i])], i))
        drawn.append(remaining.pop(pick))
        used[_bucket(drawn[-1])] += 1
    return drawn


def seed_datalist(fixed: FixedSplits, seed: int, counts: Sequence[int], pretraining_pool: int) -> dict[str, list]:
    """One benchmark seed's datalist: its labelled volumes (nested), its pretraining pool, the fixed sets.

    Args:
        fixed: the dataset's :func:`fixed_splits`.
        seed: the benchmark seed; the same seed gives the same draws.
        counts: labelled volume counts to write as ``finetune_<k>`` (nested: ``finetune_1`` is inside ``finetune_2``).
        pretraining_pool: cases of the unlabelled pool in this seed's pretraining pool (``pretrain``).

    Raises:
        ValueError: a count above the training pool, or a pretraining pool above the unlabelled pool.
    """
    too_many = [k for k in counts if k > len(fixed.training_pool)]
    if too_many:
        raise ValueError(
            f"setting finetune_{too_many[0]}: the training pool has {len(fixed.training_pool)} cases; raise "
            f"splits: training_pool or drop the setting."
        )
    if not 1 <= pretraining_pool <= len(fixed.unlabelled_pool):
        left, taken = len(fixed.unlabelled_pool), (fixed.test, fixed.validation, fixed.training_pool)
        sizes = ", ".join(f"{name} {len(cases)}" for name, cases in zip(("test", "validation", "training_pool"), taken))
        raise ValueError(
            f"splits: pretraining_pool is {pretraining_pool}, but it must be at least 1 and at most the cases left "
            f"outside {sizes}: {left} of the dataset's {left + sum(map(len, taken))}; use a dataset with more cases "
            "or smaller splits."
        )
    rng = np.random.default_rng(np.random.SeedSequence((seed, 2021)))
    labelled = _stratified_draw(fixed.training_pool, rng)
    pretrain = [dict(fixed.unlabelled_pool[i]) for i in sorted(rng.permutation(len(fixed.unlabelled_pool))[:pretraining_pool])]
    datalist: dict[str, list] = {"pretrain": pretrain}
    datalist.update({f"finetune_{k}": labelled[:k] for k in sorted(counts)})
    datalist[UPPER_BOUND] = labelled
    datalist["validation"] = [dict(e) for e in fixed.validation]
    datalist["test"] = [dict(e) for e in fixed.test]
    return datalist
