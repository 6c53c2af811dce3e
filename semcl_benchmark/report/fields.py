"""The v2 fields of a result file the report reads, in the format the benchmark writes them (issue 21).

``validation_points`` (fine-tuning): ``[{"epoch", "step", "seconds", "val_mean_dice"}, ...]``, each validation with
the optimiser steps and wall-clock seconds since the start of fine-tuning (older files: ``validation_curve``,
``[[epoch, Dice], ...]``). ``test["contrast_phases"]``: the phase bucket of every test case, in the order of
``test["cases"]``. ``budget_fractions``: ``{"points": [{"fraction", "test"}, ...]}``, the test Dice of the snapshot
nearest that fraction of ``scratch``'s best epoch. ``budget``: ``{"max_epochs": [cap, doubled cap, ...]}``.
``collapse`` (contrastive pretraining): ``{"effective_rank", "negative_cosine", "collapsed", "rule"}`` of its last
epoch. ``labelled_cases``: ``[{"case", "contrast_phase"}, ...]``. ``code``, ``allow_dirty``: the commit (``+changes``
for a dirty tree). ``encoder``: ``{"sha256", "loaded_fraction"}`` of the encoder a fine-tuning run loaded. A size's
``deviations``: ``[{text, date, reason}, ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FileProvenance", "ValidationPoint", "budget_fractions", "case_phases", "deviations", "epoch_caps",
           "provenance_of", "validation_points"]

DEVIATION_KEYS = ("text", "date", "reason")


@dataclass(frozen=True)
class ValidationPoint:
    """One validation of a fine-tuning run: epoch, optimiser steps and seconds so far (``None``: not recorded)."""

    epoch: int
    step: int
    seconds: float | None
    dice: float | None


def validation_points(result: dict) -> list[ValidationPoint]:
    """A fine-tuning run's validations in order (v1's ``validation_curve``: steps from ``steps_per_epoch``)."""
    if result.get("validation_points") is not None:
        return [ValidationPoint(p["epoch"], p["step"] if p.get("step") is not None
                                else p["epoch"] * result["steps_per_epoch"], p.get("seconds"), p.get("val_mean_dice"))
                for p in result["validation_points"]]
    return [ValidationPoint(epoch, epoch * result["steps_per_epoch"], None, dice)
            for epoch, dice in (entry[:2] for entry in result.get("validation_curve") or [])]


def case_phases(result: dict) -> list[str | None] | None:
    """The phase bucket of each test case, in the order of ``test["cases"]``; ``None`` if not recorded."""
    phases = result["test"].get("contrast_phases")
    if phases is not None and len(phases) != len(result["test"]["cases"]):
        raise ValueError(f"result {result.get('key', '?')}: test.contrast_phases has {len(phases)} entries for "
                         f"{len(result['test']['cases'])} test cases; it must name the phase of every case, in order.")
    return None if phases is None else list(phases)


def budget_fractions(result: dict) -> dict[float, dict]:
    """``{fraction of scratch's budget: test result}`` of a fine-tuning run; empty when not recorded."""
    return {float(p["fraction"]): p["test"] for p in (result.get("budget_fractions") or {}).get("points", [])}


def epoch_caps(result: dict) -> list[int]:
    """Every epoch cap a run had (the first, then one per budget extension); ``[]`` where none is recorded."""
    return list((result.get("budget") or {}).get("max_epochs") or [])


def deviations(size) -> list[dict]:
    """The size's recorded deviations from the protocol (``text``, ``date``, ``reason``; checked)."""
    entries = getattr(size, "deviations", None) or ()
    for index, entry in enumerate(entries):
        missing = [k for k in DEVIATION_KEYS if not isinstance(entry, Mapping) or not entry.get(k)]
        if missing:
            raise ValueError(f"size {size.name!r}: deviations[{index}] lacks {', '.join(missing)}; each deviation is "
                             f"a mapping {{text: what changed, date: YYYY-MM-DD, reason: why}}, got {entry!r}.")
    return [dict(entry) for entry in entries]


@dataclass(frozen=True)
class FileProvenance:
    """Where a result file came from: its commit, whether from a dirty tree, and the encoder it loaded."""

    key: str
    commit: str | None
    dirty: bool
    encoder_sha256: str | None
    loaded_fraction: float | None

    @property
    def partial_load(self) -> bool:
        """Whether the run loaded less than all keys of its encoder."""
        return self.loaded_fraction is not None and self.loaded_fraction < 1


def provenance_of(key: str, result: dict) -> FileProvenance:
    """A result's provenance fields; a commit ending in ``+changes`` counts as from a dirty tree."""
    code, encoder = result.get("code"), result.get("encoder") or {}
    dirty = bool(result.get("allow_dirty")) or (code is not None and code.endswith("+changes"))
    return FileProvenance(key, None if code is None else code.removesuffix("+changes"), dirty,
                          encoder.get("sha256"), encoder.get("loaded_fraction"))
