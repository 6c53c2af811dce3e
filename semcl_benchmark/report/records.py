"""What the report reads from a result file beyond v1's fields, and the format it expects (benchmark v2, issue 21).

The report is generated from the result files alone. Benchmark v2 adds these fields; each accessor below reads one,
and a result without it (a v1 file, or a run made before the field existed) reads as "not recorded":

``validation_curve`` (fine-tuning)
    v1: ``[[epoch, validation Dice], ...]``; v2: ``[{"epoch": e, "step": s, "seconds": t, "dice": d}, ...]`` with the
    optimiser steps and training wall-clock seconds since the start of fine-tuning at that validation
    (:func:`validation_points`).
``test["contrast_phase"]`` (fine-tuning)
    the phase bucket of every test case, in the order of ``test["cases"]``, copied from the ``contrast_phase`` of
    the test set's datalist entries (:func:`case_phases`).
``test_at_budget_fraction`` (fine-tuning, optional)
    ``{"0.25": {"cases": [...], "classes": [...], "dice": [[...]]}, ...}``: the test Dice (same layout as ``test``)
    of the checkpoint at that fraction of ``scratch``'s fine-tuning budget (its ``max_epochs`` in optimiser steps)
    (:func:`budget_fractions`).
``code``, ``allow_dirty`` (every run)
    the commit the run was made from (v1 appends ``+changes`` for a working tree with uncommitted changes), and
    ``true`` when ``--allow-dirty`` let it start from such a tree (:func:`provenance_of`).
``encoder`` (fine-tuning and embedding runs of a pretrained arm)
    ``{"sha256": "<hex digest of the encoder file>", "loaded_fraction": <share of the encoder's keys loaded>}``
    (:func:`provenance_of`).

Which report a size gets (:func:`is_v2`), and the size's recorded deviations from the protocol (:func:`deviations`),
come from the size's protocol entry: ``report: v2`` and ``deviations: [{text, date, reason}, ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "FileProvenance",
    "ValidationPoint",
    "budget_fractions",
    "case_phases",
    "deviations",
    "is_v2",
    "provenance_of",
    "validation_points",
]

DEVIATION_KEYS = ("text", "date", "reason")
"""What each entry of a size's ``deviations`` says: what changed, when, and why."""


def is_v2(size) -> bool:
    """Whether ``size`` is reported with the v2 protocol's sections: its protocol entry says ``report: v2``.

    A size without the key (every v1 size) keeps v1's report, so v1's committed report regenerates unchanged.
    """
    return getattr(size, "report", "v1") == "v2"


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

    v1's ``[epoch, dice]`` pairs get ``step = epoch * steps_per_epoch`` and no seconds.
    """
    points = []
    for entry in result.get("validation_curve") or []:
        if isinstance(entry, Mapping):
            points.append(ValidationPoint(entry["epoch"], entry["step"], entry.get("seconds"), entry.get("dice")))
        else:
            epoch, dice = entry[:2]
            points.append(ValidationPoint(epoch, epoch * result["steps_per_epoch"], None, dice))
    return points


def case_phases(result: dict) -> list[str] | None:
    """The phase bucket of each test case, in the order of ``result["test"]["cases"]``; ``None`` if not recorded."""
    phases = result["test"].get("contrast_phase")
    if phases is None:
        return None
    if len(phases) != len(result["test"]["cases"]):
        raise ValueError(f"result {result.get('key', '?')}: test.contrast_phase has {len(phases)} entries for "
                         f"{len(result['test']['cases'])} test cases; it must name the phase of every case, in order.")
    return list(phases)


def budget_fractions(result: dict) -> dict[float, dict]:
    """``{fraction of scratch's budget: test result}`` of a fine-tuning run; empty when not recorded."""
    return {float(k): v for k, v in (result.get("test_at_budget_fraction") or {}).items()}


@dataclass(frozen=True)
class FileProvenance:
    """Where a result file came from: its commit, whether from a dirty tree, and the encoder it loaded."""

    commit: str | None
    dirty: bool
    encoder_sha256: str | None
    loaded_fraction: float | None


def provenance_of(result: dict) -> FileProvenance:
    """A result's provenance fields; a v1 commit ending in ``+changes`` counts as from a dirty tree."""
    code = result.get("code")
    encoder = result.get("encoder") or {}
    dirty = bool(result.get("allow_dirty")) or (code is not None and code.endswith("+changes"))
    commit = None if code is None else code.removesuffix("+changes")
    return FileProvenance(commit, dirty, encoder.get("sha256"), encoder.get("loaded_fraction"))
