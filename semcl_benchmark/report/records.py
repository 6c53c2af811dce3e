"""What the v2 report reads from a result file beyond v1's fields, in the format the benchmark writes it (issue 21).

The report is generated from the result files alone. Benchmark v2's runs (those of a size with ``splits``; see
:func:`is_v2`) write these fields (:mod:`semcl_benchmark.stages`, :mod:`semcl_benchmark.runner`); each accessor below
reads one, and a result without it (a v1 file) reads as "not recorded":

``validation_points`` (fine-tuning)
    ``[{"epoch", "step", "seconds", "val_mean_dice"}, ...]``: each validation with the optimiser steps and training
    wall-clock seconds since the start of fine-tuning. v1 has only ``validation_curve``: ``[[epoch, Dice], ...]``
    (v2 writes it too) (:func:`validation_points`).
``test["contrast_phases"]`` (fine-tuning and atlas)
    the phase bucket of every test case, in the order of ``test["cases"]``, from the dataset's ``contrast_phase``;
    ``null`` where the dataset records none (:func:`case_phases`).
``budget_fractions`` (fine-tuning of a size with ``budget_fractions``)
    ``{"scratch_best_epoch": e, "points": [{"fraction", "epoch", "step", "model", "test"}, ...]}``: the test Dice
    (``test`` in the layout of the run's ``test``) of the snapshot nearest that fraction of the epoch of
    ``scratch``'s best validation, or of the run's best model (``"model": "best"``) where it stopped before
    (:func:`budget_fractions`, :mod:`semcl_benchmark.snapshots`).
``budget`` (fine-tuning, supervised pretraining)
    ``{"max_epochs": [cap, doubled cap, ...], "capped_while_improving": bool}``: the epoch caps the run had (one per
    budget extension) and whether it still ended at its last cap while improving (:func:`epoch_cap`).
``collapse`` (contrastive pretraining)
    ``{"effective_rank", "negative_cosine", "collapsed", "rule"}`` of its last epoch (:func:`collapse_record`).
``labelled_cases`` (fine-tuning and atlas)
    the seed's labelled volumes of the setting: ``[{"case", "contrast_phase", "contrast_time_s"}, ...]``.
``code``, ``allow_dirty`` (every run)
    the commit the run was made from (``+changes`` appended for a tree with uncommitted changes), and ``true`` when
    ``--allow-dirty`` let it start from such a tree (:func:`provenance_of`).
``encoder`` (fine-tuning of a pretrained arm; ``null`` otherwise)
    ``{"file", "sha256", "loaded_fraction", "tensors"}``: the encoder file loaded and the share of its keys that
    loaded (:func:`provenance_of`).

The size's recorded deviations from the protocol come from its protocol entry (:func:`deviations`):
``deviations: [{text, date, reason}, ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "FileProvenance",
    "ValidationPoint",
    "budget_fractions",
    "case_phases",
    "collapse_record",
    "deviations",
    "epoch_cap",
    "epoch_caps",
    "is_v2",
    "provenance_of",
    "validation_points",
]

DEVIATION_KEYS = ("text", "date", "reason")
"""What each entry of a size's ``deviations`` says: what changed, when, and why."""


def is_v2(size) -> bool:
    """Whether ``size`` is a v2 size: one with ``splits`` (seeds as draws). Its runs record v2's fields and its report
    is v2's; a size without ``splits`` (v1) keeps v1's report, so v1's committed report regenerates unchanged.

    The same rule decides what a fine-tuning run records (:meth:`semcl_benchmark.stages.Stages.finetune`).
    """
    return getattr(size, "splits", None) is not None


def deviations(size) -> list[dict]:
    """The size's recorded deviations from the protocol, each a mapping with ``text``, ``date`` and ``reason``.

    Raises:
        ValueError: naming the size and the entry, when an entry is not such a mapping.
    """
    entries = getattr(size, "deviations", None) or ()
    for index, entry in enumerate(entries):
        missing = [k for k in DEVIATION_KEYS if not isinstance(entry, Mapping) or not entry.get(k)]
        if missing:
            raise ValueError(f"size {size.name!r}: deviations[{index}] lacks {', '.join(missing)}; each deviation is "
                             f"a mapping {{text: what changed, date: YYYY-MM-DD, reason: why}}, got {entry!r}.")
    return [dict(entry) for entry in entries]


@dataclass(frozen=True)
class ValidationPoint:
    """One validation of a fine-tuning run: epoch, optimiser steps and seconds so far (``None``: not recorded)."""

    epoch: int
    step: int
    seconds: float | None
    dice: float | None


def validation_points(result: dict) -> list[ValidationPoint]:
    """A fine-tuning run's validations in order (empty when it has none, e.g. an atlas).

    v2's ``validation_points``; else v1's ``validation_curve`` pairs, with ``step = epoch * steps_per_epoch`` and no
    seconds (also where a v2 point lacks its step).
    """
    if result.get("validation_points") is not None:
        return [ValidationPoint(p["epoch"], p["step"] if p.get("step") is not None
                                else p["epoch"] * result["steps_per_epoch"], p.get("seconds"), p.get("val_mean_dice"))
                for p in result["validation_points"]]
    return [ValidationPoint(epoch, epoch * result["steps_per_epoch"], None, dice)
            for epoch, dice in (entry[:2] for entry in result.get("validation_curve") or [])]


def case_phases(result: dict) -> list[str | None] | None:
    """The phase bucket of each test case, in the order of ``result["test"]["cases"]``; ``None`` if not recorded."""
    phases = result["test"].get("contrast_phases")
    if phases is None:
        return None
    if len(phases) != len(result["test"]["cases"]):
        raise ValueError(f"result {result.get('key', '?')}: test.contrast_phases has {len(phases)} entries for "
                         f"{len(result['test']['cases'])} test cases; it must name the phase of every case, in order.")
    return list(phases)


def budget_fractions(result: dict) -> dict[float, dict]:
    """``{fraction of scratch's budget: test result}`` of a fine-tuning run; empty when not recorded."""
    record = result.get("budget_fractions") or {}
    return {float(point["fraction"]): point["test"] for point in record.get("points", [])}


def epoch_caps(result: dict) -> list[int]:
    """Every epoch cap a run had, the first and one per budget extension (``budget["max_epochs"]``); ``[]`` where the
    run records no ``budget``."""
    return list((result.get("budget") or {}).get("max_epochs") or [])


def epoch_cap(result: dict) -> int | None:
    """The last epoch cap a run had (its ``budget``'s last, after any extension); ``None`` where the run records no
    ``budget`` (no extensions planned, a v1 run): its configured ``max_epochs`` is its cap then."""
    caps = epoch_caps(result)
    return caps[-1] if caps else None


def collapse_record(result: dict) -> dict | None:
    """A contrastive pretraining run's collapse monitors at its last epoch and the writer's verdict (``collapsed``,
    by its ``rule``); ``None`` for other pretraining or a run that did not record them."""
    return result.get("collapse")


@dataclass(frozen=True)
class FileProvenance:
    """Where a result file came from: its commit, whether from a dirty tree, and the encoder it loaded."""

    commit: str | None
    dirty: bool
    encoder_sha256: str | None
    loaded_fraction: float | None


def provenance_of(result: dict) -> FileProvenance:
    """A result's provenance fields; a commit ending in ``+changes`` counts as from a dirty tree."""
    code = result.get("code")
    encoder = result.get("encoder") or {}
    dirty = bool(result.get("allow_dirty")) or (code is not None and code.endswith("+changes"))
    commit = None if code is None else code.removesuffix("+changes")
    return FileProvenance(commit, dirty, encoder.get("sha256"), encoder.get("loaded_fraction"))
