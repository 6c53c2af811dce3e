"""Run records: what one benchmark run was and what it measured, as a versioned schema of frozen dataclasses.

A result file (``<results folder>/<run key>.json``) holds one :class:`RunRecord`:

    key         :class:`RunKey`: stage, arm, labelled setting, seed, probe and tuning recipe; the file's name
    settings    :class:`RunSettings`: the run's configuration (everything that decides its result) and its hash
    draw        :class:`Draw`: the case ids of the seed's draw: labelled (of the run's setting), pretraining pool,
                validation and test, and (v3) every case's phase
    budget      :class:`Budget`: the epoch caps the run had (one per budget extension), the epochs and optimiser
                steps it did, its best epoch
    result      :class:`RunResult`: the stage's measurements (test Dice per case and organ, validation curve, cost,
                confusion matrix, encoder loaded, embedding quality, ...)
    provenance  :class:`Provenance`: the commit, whether from a dirty tree, the machine (its CPU model included),
                when, how long, and a user dataset's manifest

and, from version 4, the coarse-to-fine pipeline's fields (benchmark v3, ``docs/PROTOCOL_v3.md`` section 9; ``null``
where a run has none, e.g. every run of a v2 size):

    pipeline_stage  1 (stage 1 and the image-only arms) or 2 (the cascade's refinement)
    grids           :class:`Grids`: the grid the run trained and predicted at, and the grid its test Dice is scored at
    recipe          :class:`Recipe`: the fine-tuning recipe (name, encoder learning-rate multiplier, warm-up and
                    freeze epochs)
    priors          per use (``training``, ``validation``, ``test``) a :class:`PriorSource`: a stage-1 run's
                    prediction files (its key and each file's SHA-256), ``oracle``, ``simulated`` or ``ground_truth``
    pretraining     :class:`PretrainingProgress`: a pretraining's optimiser steps and whether its loss was still
                    falling (more than 5% over its last 20% of steps)

Schema versions. Files written before schema 3 (benchmark v1 and v2) carry no ``schema_version`` and read as
version 2: a fine-tuning or atlas file records its labelled and test cases only, a pretraining or embedding file no
case at all. Their reader (:func:`read_v2_record`) reconstructs the seed's whole draw from
:mod:`semcl_benchmark.splits` and the dataset (the phantoms made again from the generator settings the file records,
or a user's ``dataset.json``) and checks it against the cases the file recorded. Files of version 3 record the whole
draw and the budget's counts; they read with the pipeline's fields ``None``. Files of version 4
(:data:`SCHEMA_VERSION`, the only version written) add the pipeline's fields. The JSON layout keeps version 2's
fields where they were and adds ``schema_version``, ``draw``, the counts in ``budget`` and the pipeline's fields::

    {"schema_version": 4, "key": "finetune__cascade_semcl__finetune_1__seed0", "config": {...}, "config_hash": "...",
     "draw": {"labelled": ["phantom_004"], "pool": [...], "validation": [...], "test": [...], "phases": {...}},
     "budget": {"max_epochs": [1200], "capped_while_improving": false, "epochs": 920, "steps": 920, "best_epoch": 760},
     "pipeline_stage": 2, "grids": {"training_pixdim": [2.8125, 2.8125, 2.8125], "scoring_pixdim": [...]},
     "recipe": {"name": "R2", "encoder_lr_multiplier": 0.1, "encoder_warmup_epochs": 0, "encoder_freeze_epochs": 0},
     "priors": {"validation": {"source": "stage1", "stage1_run": "finetune__scratch__finetune_1__seed0",
                               "sha256": {"phantom_071": "..."}}, "test": {...}},
     "pretraining": null,
     "stage": "finetune", "test": {"cases": [...], "classes": [...], "dice": [[...], ...]}, ... (the measurements),
     "machine": {"cpu": "...", ...}, "code": "ed54484", "allow_dirty": false, "finished": "...", "total_seconds": 467.4}

A stage gives the pipeline's fields as keys of its measurements (:meth:`RunRecord.of_run` moves them into the
record); a pretraining run's :class:`PretrainingProgress` is read from its loss history when its stage gives none.
A case id is the file name of the case's image without its extensions (``phantom_004``).
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcl_components.bundle_runtime.atomic_io import read_json, write_json_atomic
from semcl_tools.hashing import file_sha256

from .splits import UPPER_BOUND, fixed_splits, labelled_counts, seed_datalist

__all__ = [
    "KEY_STAGES",
    "PRIOR_SOURCES",
    "PRIOR_USES",
    "READ_VERSIONS",
    "SCHEMA_VERSION",
    "STAGES",
    "Budget",
    "Draw",
    "Grids",
    "Pipeline",
    "PretrainingProgress",
    "PriorSource",
    "Provenance",
    "Recipe",
    "RunKey",
    "RunRecord",
    "RunRecordError",
    "RunResult",
    "RunSettings",
    "TestScores",
    "ValidationPoint",
    "case_id",
    "dataset_entries",
    "key_stage",
    "parse_run_record",
    "read_run_record",
    "read_run_records",
    "read_v2_record",
    "reconstruct_draw",
    "write_run_record",
]

SCHEMA_VERSION = 4
"""The version of the record files this module writes (files without ``schema_version`` are version 2)."""

READ_VERSIONS = (3, SCHEMA_VERSION)
"""The versions a file with a ``schema_version`` may have (version 3: without the pipeline's fields)."""

PIPELINE_FIELDS = ("pipeline_stage", "grids", "recipe", "priors", "pretraining")
"""The record's fields from version 4 on: where a run sits in the coarse-to-fine pipeline and how it was made."""

PIPELINE_STAGES = (1, 2)
"""Stage 1 (image-only at the coarse grid; every image-only arm) and stage 2 (the cascade's refinement)."""

PRIOR_SOURCES = ("stage1", "oracle", "simulated", "ground_truth")
"""Where a stage-2 run's coarse priors (or a stage-2 pretraining's pool masks) came from: a stage-1 run's prediction
files, masks made from the ground truth at evaluation (``oracle``), masks simulated from the labels during training
(``simulated``), or the label maps themselves (``ground_truth``: ``cascade_semcl_gt``'s pool masks)."""

PRIOR_USES = ("training", "validation", "test")
"""What a stage-2 run used priors for."""

STAGES = ("pretrain", "finetune", "atlas", "embedding", "predict", "oracle")
"""The stages of a run's key (see :mod:`semcl_benchmark.stages`): v3's stage 1 and stage 2 train as ``finetune``
runs; ``predict``: a stage-1 run's predictions of the pool, validation and test cases; ``oracle``: a stage-2 network
scored with priors made from the ground truth."""

_LABELLED_STAGES = ("finetune", "atlas", "predict", "oracle")
"""Stages whose runs have a labelled setting (their key names it)."""

_SETTING_OPTIONAL = ("pretrain",)
"""Stages whose runs may name a labelled setting (v3's stage-2 pretraining on masks of that setting's stage 1)."""

_TESTED_STAGES = ("finetune", "atlas", "oracle")
"""Stages whose runs' files hold test Dice."""

_UNTRAINED_STAGES = ("atlas", "predict", "oracle")
"""Stages whose runs train nothing (their budget: no cap, 0 epochs)."""

KEY_STAGES = {"stage1": "finetune", "cascade": "finetune"}
"""The key stage of a run whose configuration names a v3 workflow as its ``stage`` (stage 1 and stage 2 train as
``finetune`` runs); any other configuration's ``stage`` is its key's."""


def key_stage(stage: str) -> str:
    """The key stage of a configuration's ``stage`` (:data:`KEY_STAGES`)."""
    return KEY_STAGES.get(stage, stage)


_PROVENANCE_KEYS = ("machine", "code", "allow_dirty", "finished", "total_seconds", "dataset")
_RECORD_KEYS = ("schema_version", "key", "config", "config_hash", "draw", "budget", *PIPELINE_FIELDS,
                *_PROVENANCE_KEYS)
"""The file's fields that are not the stage's measurements."""

_SEED = re.compile(r"seed(\d+)")


class RunRecordError(ValueError):
    """A result file that is not a run record of a known schema; the message names the file and what is wrong."""


def case_id(path: str | os.PathLike) -> str:
    """A case's id: its image file's name without extensions (``./imagesTr/phantom_004.nii.gz`` -> ``phantom_004``)."""
    return os.path.basename(str(path)).split(".")[0]


# ----------------------------------------------------------------------------------------------------------- key


@functools.total_ordering
@dataclass(frozen=True)
class RunKey:
    """What a run is: its stage, arm, labelled setting (fine-tuning and atlas runs only), seed, whether it is the
    frozen-encoder probe, and the candidate recipe of a run of the recipe selection (``tuning_recipe``: a tuning
    seed's run of an arm that chooses its fine-tuning recipe, ``docs/PROTOCOL_v3.md`` section 5; ``None`` otherwise).
    Its :attr:`name` names the run's result file, work folder and log; keys sort by name.

    Raises:
        ValueError: an unknown stage, a setting where the stage has none (or none where it needs one), a probe that is
            no fine-tuning run, a tuning recipe of a run without a setting, a negative seed, or an arm, setting or
            recipe that would make an ambiguous name.
    """

    stage: str
    arm: str
    setting: str | None
    seed: int
    probe: bool = False
    tuning_recipe: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"run key: unknown stage {self.stage!r}; a run is one of {', '.join(STAGES)}.")
        if self.stage not in _SETTING_OPTIONAL and (self.setting is not None) != (self.stage in _LABELLED_STAGES):
            needs = "needs a labelled setting" if self.setting is None else f"has no setting (got {self.setting!r})"
            raise ValueError(f"run key: a {self.stage} run {needs}.")
        if self.probe and self.stage != "finetune":
            raise ValueError(f"run key: only a fine-tuning run can be a probe, not a {self.stage} run.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"run key: the seed must be a whole number >= 0, got {self.seed!r}.")
        for what, part in (("arm", self.arm), ("setting", self.setting), ("tuning recipe", self.tuning_recipe)):
            if part is not None and (not isinstance(part, str) or not part or "__" in part):
                raise ValueError(f"run key: the {what} {part!r} must be a non-empty name without '__'.")
        if self.tuning_recipe is not None:
            if self.stage not in _LABELLED_STAGES:
                raise ValueError(f"run key: a {self.stage} run has no tuning recipe (got {self.tuning_recipe!r}).")
            if self.tuning_recipe == "probe" or _SEED.fullmatch(self.tuning_recipe):
                raise ValueError(f"run key: the tuning recipe {self.tuning_recipe!r} would make an ambiguous name.")

    @property
    def name(self) -> str:
        """``pretrain__<arm>[__<setting>]__seed<s>``, ``finetune__<arm>__<setting>__seed<s>[__<tuning recipe>]
        [__probe]``, ``atlas__<arm>__<setting>__seed<s>``, ``embedding__<arm>__seed<s>``,
        ``predict__<arm>__<setting>__seed<s>`` or ``oracle__<arm>__<setting>__seed<s>[__<tuning recipe>]``."""
        parts = [self.stage, self.arm, *([self.setting] if self.setting else []), f"seed{self.seed}"]
        parts += [self.tuning_recipe] if self.tuning_recipe else []
        return "__".join(parts + (["probe"] if self.probe else []))

    def __str__(self) -> str:
        return self.name

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RunKey):
            return NotImplemented
        return self.name < other.name

    @classmethod
    def parse(cls, name: str) -> RunKey:
        """The key named ``name`` (a result file's stem).

        Raises:
            ValueError: ``name`` is no run key's name.
        """
        parts = str(name).split("__")
        probe = parts[-1] == "probe"
        parts = parts[:-1] if probe else parts
        labelled = parts[0] in _LABELLED_STAGES or (parts[0] in _SETTING_OPTIONAL and len(parts) == 4)
        recipe = parts.pop() if parts[0] in _LABELLED_STAGES and len(parts) == 5 else None
        seed = _SEED.fullmatch(parts[-1]) if parts else None
        if seed is None or len(parts) != (4 if labelled else 3):
            raise ValueError(
                f"{name!r} is no run key: a run key is pretrain__<arm>[__<setting>]__seed<s>, finetune__<arm>__"
                "<setting>__seed<s>[__<tuning recipe>][__probe], atlas__<arm>__<setting>__seed<s>, embedding__<arm>__"
                "seed<s>, predict__<arm>__<setting>__seed<s> or oracle__<arm>__<setting>__seed<s>[__<tuning recipe>]."
            )
        return cls(parts[0], parts[1], parts[2] if labelled else None, int(seed.group(1)), probe, recipe)

    @classmethod
    def of_config(cls, config: Mapping) -> RunKey:
        """The key of a run's configuration (its ``stage``, :func:`key_stage`, ``arm``, ``setting``, ``seed``,
        ``probe`` and ``tuning_recipe``)."""
        return cls(key_stage(config["stage"]), config["arm"], config.get("setting"), config["seed"],
                   bool(config.get("probe")), config.get("tuning_recipe"))


# ------------------------------------------------------------------------------------------- settings and draw


@dataclass(frozen=True)
class RunSettings:
    """A run's configuration, everything that decides its result (:meth:`semcl_benchmark.plan.Planner.plan`), and
    its hash (:func:`semcl_benchmark.plan.config_hash`): a result counts only for exactly this configuration."""

    config: Mapping[str, Any]
    config_hash: str

    @property
    def data(self) -> Mapping[str, Any]:
        """The dataset: the phantoms' generator settings or the user's folder, and the ``splits`` (v2 on)."""
        return self.config.get("data") or {}


@dataclass(frozen=True)
class Draw:
    """The case ids of a seed's draw (:mod:`semcl_benchmark.splits`).

    Args:
        labelled: the labelled volumes of the run's setting, in the order the seed drew them (empty for a run without
            a setting: pretraining, embedding).
        pool: the seed's pretraining pool.
        validation: the fixed validation set.
        test: the fixed test set.
        reconstructed: whether ``pool`` and ``validation`` (and, for a run without a setting, ``test``) were
            reconstructed from the splits rather than recorded (a version-2 file).
        phases: each of those cases' contrast phase bucket, where the datalist records the whole draw (v3's
            ``draw`` entry, :meth:`semcl_benchmark.draws_v3.DrawDesign.record`); empty otherwise, and then not written.
    """

    labelled: tuple[str, ...]
    pool: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    reconstructed: bool = False
    phases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_datalist(cls, datalist: Mapping[str, Sequence[Mapping]], setting: str | None,
                      reconstructed: bool = False) -> Draw:
        """The draw in a seed's datalist (``pretrain``, ``finetune_<k>``, ``validation``, ``test``: lists of entries
        with an ``image``) for a run in ``setting`` (``None``: no labelled volumes), with the phases of its cases
        where the datalist records its whole draw (``draw``: v3)."""

        def ids(split: str | None) -> tuple[str, ...]:
            return tuple(case_id(entry["image"]) for entry in (datalist.get(split, ()) if split else ()))

        splits = (ids(setting), ids("pretrain"), ids("validation"), ids("test"))
        recorded = (datalist.get("draw") or {}).get("phases", {})
        phases = {case: recorded[case] for cases in splits for case in cases if case in recorded}
        return cls(*splits, reconstructed, phases)

    def to_json(self) -> dict:
        draw = {"labelled": list(self.labelled), "pool": list(self.pool), "validation": list(self.validation),
                "test": list(self.test)}
        return {**draw, "phases": dict(self.phases)} if self.phases else draw

    @classmethod
    def from_json(cls, data: Any) -> Draw:
        """Raises: ValueError: ``data`` lacks a split or holds something other than case ids."""
        splits = ("labelled", "pool", "validation", "test")
        if not isinstance(data, Mapping) or not all(_ids(data.get(split)) for split in splits):
            raise ValueError(f"'draw' must map each of {', '.join(splits)} to a list of case ids, got {data!r}")
        phases = data.get("phases") or {}
        if not isinstance(phases, Mapping) or not all(isinstance(v, str) for v in phases.values()):
            raise ValueError(f"'draw': 'phases' must map case ids to phase buckets, got {phases!r}")
        return cls(*(tuple(data[split]) for split in splits), phases=dict(phases))


def _ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# ---------------------------------------------------------------------------------------------- budget, result


@dataclass(frozen=True)
class Budget:
    """How long a run trained, as the protocol counts it: epoch caps and what was done under them.

    Args:
        max_epochs: the epoch caps the run had: its configured cap, then one per budget extension (each doubled).
        epochs: epochs done (0 for an atlas).
        steps: optimiser steps done (epochs x steps per epoch for fine-tuning; the last iteration for pretraining).
        best_epoch: the epoch of the best validation (``None``: a run without validation).
        capped_while_improving: whether the run ended at its last cap while still improving (``None``: not assessed,
            a run without budget extensions).
    """

    max_epochs: tuple[int, ...]
    epochs: int | None
    steps: int | None
    best_epoch: int | None = None
    capped_while_improving: bool | None = None

    def to_json(self) -> dict:
        return {"max_epochs": list(self.max_epochs), "capped_while_improving": self.capped_while_improving,
                "epochs": self.epochs, "steps": self.steps, "best_epoch": self.best_epoch}

    @classmethod
    def of_run(cls, config: Mapping, values: Mapping) -> Budget | None:
        """The budget of a run with configuration ``config`` and measurements ``values`` (with a ``budget`` field:
        the caps, and from version 3 the counts); ``None`` for an embedding run, which does not train."""
        stage = key_stage(config["stage"])
        if stage == "embedding":
            return None
        if stage in _UNTRAINED_STAGES:
            return cls((), 0, 0)
        recorded = values.get("budget") or {}
        if stage == "finetune":
            epochs, best = values.get("epochs"), values.get("best_metric_epoch")
            per_epoch = values.get("steps_per_epoch")
            steps = None if epochs is None or per_epoch is None else epochs * per_epoch
            cap = (config.get("finetune") or {}).get("max_epochs")
        else:  # pretraining: the workflow's run summary and its per-epoch history
            summary, history = values.get("summary") or {}, values.get("history") or []
            epochs = summary.get("epochs_completed", history[-1].get("epoch") if history else None)
            steps, best = history[-1].get("iteration") if history else None, summary.get("best_metric_epoch")
            cap = summary.get("max_epochs")
        caps = recorded.get("max_epochs") or ([] if cap is None else [cap])
        return cls(tuple(caps), recorded.get("epochs", epochs), recorded.get("steps", steps),
                   recorded.get("best_epoch", best), recorded.get("capped_while_improving"))


@dataclass(frozen=True)
class ValidationPoint:
    """One validation during training: its epoch, the optimiser steps and training seconds so far (``None`` where not
    recorded: v1), and the mean validation Dice."""

    epoch: int
    step: int | None
    seconds: float | None
    dice: float | None


@dataclass(frozen=True)
class TestScores:
    """Per-case, per-organ Dice on the test set.

    Args:
        cases: the test case ids, in the order of ``dice``'s rows.
        classes: the organs, in the order of ``dice``'s columns.
        dice: ``(cases, classes)``; ``None`` where the organ is absent from the case (and from its prediction).
        phases: each case's contrast phase bucket (``None``: the dataset records none).
    """

    __test__ = False  # not a test class, whatever its name

    cases: tuple[str, ...]
    classes: tuple[str, ...]
    dice: tuple[tuple[float | None, ...], ...]
    phases: tuple[str | None, ...] | None = None

    @classmethod
    def from_json(cls, test: Mapping) -> TestScores:
        """A result's ``test`` field (``cases`` as file names, ``classes``, ``dice``, optionally ``contrast_phases``).

        Raises:
            ValueError: a field missing, or ``dice`` not one row per case of one value per class.
        """
        if not isinstance(test, Mapping) or not all(isinstance(test.get(k), list) for k in ("cases", "classes", "dice")):
            raise ValueError("'test' must hold the lists 'cases', 'classes' and 'dice'")
        cases, classes, dice = test["cases"], test["classes"], test["dice"]
        if len(dice) != len(cases) or any(not isinstance(row, list) or len(row) != len(classes) for row in dice):
            raise ValueError(f"'test' 'dice' must hold one row of {len(classes)} values per case ({len(cases)} cases)")
        phases = test.get("contrast_phases")
        return cls(tuple(map(case_id, cases)), tuple(classes), tuple(tuple(row) for row in dice),
                   None if phases is None else tuple(phases))

    def _array(self) -> np.ndarray:
        return np.array([[np.nan if v is None else v for v in row] for row in self.dice], dtype=np.float64)

    def case_means(self) -> np.ndarray:
        """``(cases,)``: each case's mean Dice over the organs present in it."""
        with warnings.catch_warnings():  # a case without any organ: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(self._array(), axis=1)

    @property
    def mean_dice(self) -> float:
        """The run's mean test Dice: the mean over test cases of each case's mean organ Dice."""
        return float(np.nanmean(self.case_means()))

    def organ_dice(self) -> dict[str, float]:
        """Each organ's mean Dice over the cases it is present in (NaN: present in none)."""
        with warnings.catch_warnings():  # an organ in no case: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(self._array(), axis=0)
        return {organ: float(value) for organ, value in zip(self.classes, means)}


@dataclass(frozen=True)
class RunResult:
    """What a run's stage measured, as the result file holds it (:mod:`semcl_benchmark.stages`), with typed views of
    the fields the report reads.

    Args:
        stage: the run's stage.
        values: the stage's measurements: every field of the file besides the record's own (key, configuration,
            draw, budget, provenance); e.g. ``test``, ``validation_points``, ``cost``, ``confusion_matrix``,
            ``encoder``, ``budget_fractions`` for fine-tuning; ``summary``, ``history``, ``collapse`` for pretraining;
            ``knn_accuracy`` and the silhouettes for embedding.
    """

    stage: str
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def test(self) -> TestScores | None:
        """Per-case, per-organ test Dice (fine-tuning and atlas runs)."""
        test = self.values.get("test")
        return None if test is None else TestScores.from_json(test)

    @property
    def validation(self) -> tuple[ValidationPoint, ...]:
        """Every validation of a fine-tuning run (v1 files: epochs and Dice only)."""
        points = self.values.get("validation_points")
        if points is not None:
            return tuple(ValidationPoint(p["epoch"], p.get("step"), p.get("seconds"), p.get("val_mean_dice"))
                         for p in points)
        return tuple(ValidationPoint(epoch, None, None, dice) for epoch, dice in self.values.get("validation_curve", []))

    @property
    def best_validation_dice(self) -> float | None:
        return self.values.get("best_metric")

    def _cost_parts(self) -> list[Mapping]:
        """The measured parts of the run's ``cost`` (one, or one per workflow: training, evaluation)."""
        cost = self.values.get("cost") or {}
        return [cost] if "seconds" in cost else [v for v in cost.values() if isinstance(v, Mapping)]

    def seconds(self) -> float:
        """The run's measured wall-clock seconds (training and evaluation together)."""
        return float(sum(part.get("seconds") or 0.0 for part in self._cost_parts()))

    def cpu_seconds(self) -> float:
        """The run's CPU seconds (training and evaluation together; a part without them counts its wall clock): what
        a run costs on a machine with a core for it, whatever else shared the machine while it ran."""
        return float(sum(part.get("cpu_seconds") or part.get("seconds") or 0.0 for part in self._cost_parts()))


# ------------------------------------------------------------------------------------------ pipeline (version 4)


def _pixdim(value: Any, what: str) -> tuple[float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"'grids': {what} must be 3 spacings in mm, got {value!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class Grids:
    """The grids of a run, as voxel spacings in mm (``docs/PROTOCOL_v3.md`` section 2).

    Args:
        training_pixdim: the grid the run trained and predicted at (stage 1: the coarse grid, 5.625 mm; stage 2: the
            data's own, 2.8125 mm).
        scoring_pixdim: the grid its test Dice is computed at (v3: always the fine grid; an image-only prediction is
            resampled onto it, nearest neighbour).
    """

    training_pixdim: tuple[float, float, float]
    scoring_pixdim: tuple[float, float, float]

    def to_json(self) -> dict:
        return {"training_pixdim": list(self.training_pixdim), "scoring_pixdim": list(self.scoring_pixdim)}

    @classmethod
    def from_json(cls, data: Any) -> Grids:
        """Raises: ValueError: not a mapping of the two grids, each 3 positive spacings."""
        if not isinstance(data, Mapping):
            raise ValueError(f"'grids' must map training_pixdim and scoring_pixdim to spacings, got {data!r}")
        return cls(*(_pixdim(data.get(name), name) for name in ("training_pixdim", "scoring_pixdim")))


@dataclass(frozen=True)
class Recipe:
    """How a run fine-tuned its encoder (``docs/PROTOCOL_v3.md`` section 5): the recipe's name and its settings as the
    bundle's ``train.yaml`` takes them.

    Args:
        name: the recipe's name in the protocol (``R1``, ``R2``, ...).
        encoder_lr_multiplier: the encoder's learning rate as a fraction of the decoder's.
        encoder_warmup_epochs: epochs over which the encoder's learning rate rises linearly from 0 (0: none).
        encoder_freeze_epochs: epochs at the start with the encoder's learning rate 0 (a linear probe; 0: none).
    """

    name: str
    encoder_lr_multiplier: float
    encoder_warmup_epochs: int = 0
    encoder_freeze_epochs: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "__" in self.name:
            raise ValueError(f"recipe: the name {self.name!r} must be a non-empty name without '__'.")
        multiplier = self.encoder_lr_multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not multiplier >= 0:
            raise ValueError(f"recipe {self.name}: encoder_lr_multiplier must be >= 0, got {multiplier!r}.")
        for what in ("encoder_warmup_epochs", "encoder_freeze_epochs"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"recipe {self.name}: {what} must be a whole number >= 0, got {value!r}.")

    @property
    def overrides(self) -> dict[str, float | int]:
        """The recipe as ``train.yaml`` overrides."""
        return {"encoder_lr_multiplier": float(self.encoder_lr_multiplier),
                "encoder_warmup_epochs": self.encoder_warmup_epochs,
                "encoder_freeze_epochs": self.encoder_freeze_epochs}

    def to_json(self) -> dict:
        return {"name": self.name, **self.overrides}

    @classmethod
    def from_json(cls, data: Any) -> Recipe:
        """Raises: ValueError: not a recipe's mapping (a name and its settings)."""
        if not isinstance(data, Mapping) or "name" not in data or "encoder_lr_multiplier" not in data:
            raise ValueError(f"'recipe' must hold a name and encoder_lr_multiplier, got {data!r}")
        return cls(data["name"], data["encoder_lr_multiplier"], data.get("encoder_warmup_epochs", 0),
                   data.get("encoder_freeze_epochs", 0))


@dataclass(frozen=True)
class PriorSource:
    """Where a stage-2 run's coarse priors for one use came from.

    Args:
        source: one of :data:`PRIOR_SOURCES`.
        stage1_run: the name of the stage-1 run whose predictions were the priors (``stage1`` only).
        sha256: each prediction file's SHA-256 by case id (``stage1`` only): a resumed unit whose priors were made
            again shows as other hashes.
    """

    source: str
    stage1_run: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in PRIOR_SOURCES:
            raise ValueError(f"prior source {self.source!r} is not one of {', '.join(PRIOR_SOURCES)}.")
        if self.source == "stage1":
            RunKey.parse(str(self.stage1_run))  # a ValueError naming it when it is no run
            if not self.sha256 or not all(isinstance(v, str) and len(v) == 64 for v in self.sha256.values()):
                raise ValueError(f"stage-1 priors of {self.stage1_run} need each prediction file's SHA-256 by case id.")
        elif self.stage1_run is not None or self.sha256:
            raise ValueError(f"{self.source} priors have no stage-1 run or prediction files.")

    @classmethod
    def of_files(cls, stage1_run: RunKey | str, files: Sequence[str | os.PathLike]) -> PriorSource:
        """Priors read from a stage-1 run's prediction ``files`` (one per case, named after the case's image)."""
        return cls("stage1", str(stage1_run), {case_id(path): file_sha256(path) for path in files})

    def to_json(self) -> dict:
        return {"source": self.source, "stage1_run": self.stage1_run, "sha256": dict(self.sha256)}

    @classmethod
    def from_json(cls, data: Any) -> PriorSource:
        """Raises: ValueError: not a prior source's mapping."""
        if not isinstance(data, Mapping) or not isinstance(data.get("sha256", {}), Mapping):
            raise ValueError(f"a prior source must map source, stage1_run and sha256, got {data!r}")
        return cls(data.get("source"), data.get("stage1_run"), dict(data.get("sha256") or {}))


@dataclass(frozen=True)
class PretrainingProgress:
    """A pretraining's optimiser steps and its loss over its last steps (``docs/PROTOCOL_v3.md`` section 5).

    Args:
        steps: optimiser steps done.
        loss_fall: how much the loss fell over the last :attr:`LAST_FRACTION` of the steps, as a fraction of the loss
            where that stretch starts: 1 - (mean loss of the last epoch) / (mean loss of the last epoch that ended
            before the stretch); ``None`` where the history has no loss or no epoch before the stretch.
        still_falling: ``loss_fall`` above :attr:`STILL_FALLING` (``None`` with it).
    """

    steps: int
    loss_fall: float | None = None
    still_falling: bool | None = None

    #: the stretch of a run's steps, at its end, over which its loss is compared
    LAST_FRACTION = 0.2
    #: a fall of the loss over that stretch above this fraction: the pretraining is still falling
    STILL_FALLING = 0.05

    @classmethod
    def of_history(cls, history: Sequence[Mapping]) -> PretrainingProgress | None:
        """The progress of a workflow's per-epoch ``history`` (``iteration``: optimiser steps so far, ``mean_loss``);
        ``None`` for an empty history."""
        points = [(h["iteration"], h.get("mean_loss")) for h in history if isinstance(h.get("iteration"), int)]
        if not points:
            return None
        steps, last = points[-1]
        start = steps * (1 - cls.LAST_FRACTION)
        before = [loss for step, loss in points if step <= start]
        first = before[-1] if before else None
        if first is None or last is None or not first > 0 or not math.isfinite(last):
            return cls(steps)
        fall = 1.0 - last / first
        return cls(steps, round(fall, 6), fall > cls.STILL_FALLING)

    def to_json(self) -> dict:
        return {"steps": self.steps, "loss_fall": self.loss_fall, "still_falling": self.still_falling}

    @classmethod
    def from_json(cls, data: Any) -> PretrainingProgress:
        """Raises: ValueError: not a mapping with the steps."""
        steps = data.get("steps") if isinstance(data, Mapping) else None
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise ValueError(f"'pretraining' must hold the optimiser steps, got {data!r}")
        return cls(data["steps"], data.get("loss_fall"), data.get("still_falling"))


@dataclass(frozen=True)
class Pipeline:
    """A record's version-4 fields (module docstring); every one ``None`` (``priors`` empty) for a run outside the
    coarse-to-fine pipeline and for a version-3 or version-2 file."""

    pipeline_stage: int | None = None
    grids: Grids | None = None
    recipe: Recipe | None = None
    priors: Mapping[str, PriorSource] = field(default_factory=dict)
    pretraining: PretrainingProgress | None = None

    def to_json(self) -> dict:
        return {"pipeline_stage": self.pipeline_stage, "grids": None if self.grids is None else self.grids.to_json(),
                "recipe": None if self.recipe is None else self.recipe.to_json(),
                "priors": {use: source.to_json() for use, source in self.priors.items()},
                "pretraining": None if self.pretraining is None else self.pretraining.to_json()}

    @classmethod
    def from_json(cls, data: Mapping) -> Pipeline:
        """The fields in a file's content (or a stage's measurements): absent or ``null`` ones are ``None``.

        Raises:
            ValueError: a field that is not of its kind, naming it.
        """
        stage = data.get("pipeline_stage")
        if stage is not None and stage not in PIPELINE_STAGES:
            raise ValueError(f"'pipeline_stage' must be 1 or 2, got {stage!r}")
        priors = data.get("priors") or {}
        if not isinstance(priors, Mapping) or set(priors) - set(PRIOR_USES):
            raise ValueError(f"'priors' must map some of {', '.join(PRIOR_USES)} to a prior source, got {priors!r}")
        return cls(stage,
                   None if data.get("grids") is None else Grids.from_json(data["grids"]),
                   None if data.get("recipe") is None else Recipe.from_json(data["recipe"]),
                   {use: PriorSource.from_json(source) for use, source in priors.items()},
                   None if data.get("pretraining") is None else PretrainingProgress.from_json(data["pretraining"]))


@dataclass(frozen=True)
class Provenance:
    """Where and when a run was made: the commit (``+changes``: a dirty tree), whether ``--allow-dirty`` let it start,
    the machine (CPU, cores, torch, Python), when it finished and how long it took, and a user dataset's manifest
    (:func:`semcl_benchmark.datasets.dataset_manifest`; ``None`` for phantoms)."""

    code: str | None = None
    allow_dirty: bool = False
    machine: Mapping[str, Any] = field(default_factory=dict)
    finished: str | None = None
    total_seconds: float | None = None
    dataset: Mapping[str, Any] | None = None

    @property
    def cpu_model(self) -> str | None:
        """The CPU model of the machine (``None``: not recorded)."""
        return self.machine.get("cpu")

    def to_json(self) -> dict:
        fields = {"machine": dict(self.machine), "code": self.code, "allow_dirty": self.allow_dirty,
                  "finished": self.finished, "total_seconds": self.total_seconds}
        return fields if self.dataset is None else {**fields, "dataset": dict(self.dataset)}

    @classmethod
    def from_json(cls, data: Mapping) -> Provenance:
        return cls(data.get("code"), bool(data.get("allow_dirty", False)), data.get("machine") or {},
                   data.get("finished"), data.get("total_seconds"), data.get("dataset"))


# ---------------------------------------------------------------------------------------------------- record


@dataclass(frozen=True)
class RunRecord:
    """One run's result file: see the module docstring."""

    key: RunKey
    settings: RunSettings
    draw: Draw | None
    budget: Budget | None
    result: RunResult
    provenance: Provenance
    schema_version: int = SCHEMA_VERSION
    pipeline: Pipeline = field(default_factory=Pipeline)

    @classmethod
    def of_run(cls, settings: RunSettings, draw: Draw | None, values: Mapping, provenance: Provenance) -> RunRecord:
        """The record of a run just made: its configuration, its draw, what its stage measured (``values``, with the
        budget's caps under ``budget`` and the pipeline's fields under their names) and its provenance. A pretraining
        run whose stage gave no ``pretraining`` gets it from its ``history``
        (:meth:`PretrainingProgress.of_history`).

        Raises:
            RunRecordError: the measurements lack what a record of the stage holds (e.g. a fine-tuning run's test
                Dice), or hold a pipeline field not of its kind: such a record would be written and then refused when
                read.
        """
        key = RunKey.of_config(settings.config)
        if key.stage == "pretrain" and values.get("pretraining") is None:
            progress = PretrainingProgress.of_history(values.get("history") or [])
            values = {**values, "pretraining": None if progress is None else progress.to_json()}
        return _record({**values, **provenance.to_json()}, key.name, key, settings, draw, SCHEMA_VERSION)

    def to_json(self) -> dict:
        """The result file's content (module docstring)."""
        record = {"schema_version": self.schema_version, "key": self.key.name, "config": self.settings.config,
                  "config_hash": self.settings.config_hash,
                  "draw": None if self.draw is None else self.draw.to_json()}
        if self.budget is not None:
            record["budget"] = self.budget.to_json()
        if self.schema_version >= 4:
            record.update(self.pipeline.to_json())
        return {**record, **self.result.values, **self.provenance.to_json()}

    @classmethod
    def from_json(cls, data: Any, path: str | os.PathLike = "<record>") -> RunRecord:
        """A record of version 3 or 4 (:data:`READ_VERSIONS`) from a result file's content ``data`` (read from
        ``path``, for messages).

        Raises:
            RunRecordError: naming ``path`` and what is missing or inconsistent.
        """
        key, settings = _key_and_settings(data, path)
        version = data.get("schema_version")
        if version not in READ_VERSIONS:
            raise RunRecordError(f"{path}: schema_version {version!r} is not one of "
                                 f"{', '.join(map(str, READ_VERSIONS))}.")
        try:
            draw = None if data.get("draw") is None else Draw.from_json(data["draw"])
        except ValueError as error:
            raise RunRecordError(f"{path}: {error}.") from error
        return _record(data, path, key, settings, draw, version)

    def as_row(self) -> dict[str, Any]:
        """One flat row of the record for a table (``pandas.DataFrame([r.as_row() for r in records])``).

        Columns: ``key``, ``stage``, ``arm``, ``setting``, ``seed``, ``probe``, ``tuning_recipe``, ``schema_version``,
        ``config_hash``,
        the draw (``labelled``: the number of labelled volumes, ``labelled_cases``, ``pool``, ``validation``,
        ``test_cases``: tuples of case ids, ``draw_reconstructed``), the budget (``max_epochs``: the last cap,
        ``budget_extensions``, ``epochs``, ``steps``, ``best_epoch``, ``capped_while_improving``), the result
        (``best_validation_dice``, ``mean_test_dice``, ``dice_<organ>`` per organ, ``seconds``, ``encoder_sha256``,
        ``encoder_loaded_fraction``, ``collapsed``, ``knn_accuracy``, ``silhouette_test``), the pipeline
        (``pipeline_stage``, ``training_pixdim``, ``scoring_pixdim``, ``recipe``: its name, ``<use>_prior``: each
        prior's source, ``pretraining_steps``, ``still_falling``) and the provenance (``code``, ``allow_dirty``,
        ``finished``, ``total_seconds``, ``cpu``); ``None`` where the run has no such value.
        """
        key, draw, budget, values = self.key, self.draw, self.budget, self.result.values
        pipeline = self.pipeline
        encoder, test = values.get("encoder") or {}, self.result.test
        row: dict[str, Any] = {
            "key": key.name, "stage": key.stage, "arm": key.arm, "setting": key.setting, "seed": key.seed,
            "probe": key.probe, "tuning_recipe": key.tuning_recipe, "schema_version": self.schema_version,
            "config_hash": self.settings.config_hash,
            "labelled": None if draw is None else len(draw.labelled),
            **{column: None if draw is None else getattr(draw, split) for column, split in
               (("labelled_cases", "labelled"), ("pool", "pool"), ("validation", "validation"), ("test_cases", "test"))},
            "draw_reconstructed": None if draw is None else draw.reconstructed,
            "max_epochs": budget.max_epochs[-1] if budget and budget.max_epochs else None,
            "budget_extensions": len(budget.max_epochs) - 1 if budget and budget.max_epochs else None,
            **{name: None if budget is None else getattr(budget, name)
               for name in ("epochs", "steps", "best_epoch", "capped_while_improving")},
            "best_validation_dice": self.result.best_validation_dice,
            "mean_test_dice": None if test is None else test.mean_dice,
            "seconds": self.result.seconds(),
            "encoder_sha256": encoder.get("sha256"), "encoder_loaded_fraction": encoder.get("loaded_fraction"),
            "collapsed": (values.get("collapse") or {}).get("collapsed"),
            "knn_accuracy": values.get("knn_accuracy"), "silhouette_test": values.get("silhouette_test"),
            "pipeline_stage": pipeline.pipeline_stage,
            **{name: None if pipeline.grids is None else getattr(pipeline.grids, name)
               for name in ("training_pixdim", "scoring_pixdim")},
            "recipe": None if pipeline.recipe is None else pipeline.recipe.name,
            **{f"{use}_prior": pipeline.priors[use].source if use in pipeline.priors else None for use in PRIOR_USES},
            "pretraining_steps": None if pipeline.pretraining is None else pipeline.pretraining.steps,
            "still_falling": None if pipeline.pretraining is None else pipeline.pretraining.still_falling,
            "code": self.provenance.code, "allow_dirty": self.provenance.allow_dirty,
            "finished": self.provenance.finished, "total_seconds": self.provenance.total_seconds,
            "cpu": self.provenance.cpu_model,
        }
        row.update({f"dice_{organ}": dice for organ, dice in ({} if test is None else test.organ_dice()).items()})
        return row


def _key_and_settings(data: Any, path: str | os.PathLike) -> tuple[RunKey, RunSettings]:
    """The key and settings of a result file's content; a file whose name, key and configuration disagree is refused.

    Raises:
        RunRecordError: naming ``path``.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("config"), Mapping):
        raise RunRecordError(f"{path}: not a run record (a JSON object with the run's 'config').")
    if not isinstance(data.get("config_hash"), str):
        raise RunRecordError(f"{path}: no 'config_hash' (the hash of the run's configuration).")
    try:
        key = RunKey.of_config(data["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise RunRecordError(f"{path}: the run's 'config' names no run ({error}).") from None
    if data.get("key") != key.name:
        raise RunRecordError(f"{path}: its 'key' {data.get('key')!r} is not its configuration's run {key.name!r}.")
    stem = Path(path).name.removesuffix(".json")
    if Path(path).suffix == ".json" and stem != key.name:
        raise RunRecordError(f"{path}: the file is named {stem!r} but records the run {key.name!r}.")
    return key, RunSettings(data["config"], data["config_hash"])


def _record(data: Mapping, path: str | os.PathLike, key: RunKey, settings: RunSettings, draw: Draw | None,
            version: int) -> RunRecord:
    """The record of a file's content whose key, settings and draw are read: its budget, result, provenance and (from
    version 4) the pipeline's fields."""
    values = {k: v for k, v in data.items() if k not in _RECORD_KEYS}
    if key_stage(values.get("stage", key.stage)) != key.stage:
        raise RunRecordError(f"{path}: its 'stage' {values['stage']!r} is not its run's stage {key.stage!r}.")
    result = RunResult(key.stage, values)
    try:
        if key.stage in _TESTED_STAGES:
            if result.test is None:
                raise ValueError(f"a {key.stage} run's file holds its 'test' Dice")
        budget = Budget.of_run(settings.config, data)
        pipeline = Pipeline.from_json(data) if version >= 4 else Pipeline()
    except (ValueError, TypeError, AttributeError) as error:
        raise RunRecordError(f"{path}: {error}.") from error
    return RunRecord(key, settings, draw, budget, result, Provenance.from_json(data), version, pipeline)


# ----------------------------------------------------------------------------------------- version-2 reader


def read_v2_record(data: Any, path: str | os.PathLike = "<record>") -> RunRecord:
    """A record from a version-2 result file's content ``data`` (benchmark v1 and v2: no ``schema_version``).

    The draw is reconstructed (:func:`reconstruct_draw`) and checked against the labelled cases
    (``labelled_cases``) and test cases (``test["cases"]``) the file recorded; a v1 file (a size without ``splits``:
    every seed had the dataset's own datalist) has no draw (``None``).

    Raises:
        RunRecordError: naming ``path``: the file is not a run record, or its recorded cases are not those of the
            reconstructed draw.
    """
    key, settings = _key_and_settings(data, path)
    try:
        draw = reconstruct_draw(settings.config)
    except (KeyError, TypeError, ValueError) as error:
        raise RunRecordError(f"{path}: its draw cannot be reconstructed from its configuration: {error}") from error
    record = _record(data, path, key, settings, draw, 2)
    if draw is not None and key.stage in _LABELLED_STAGES:
        recorded = data.get("labelled_cases")
        if not isinstance(recorded, list) or not all(isinstance(c, Mapping) and "case" in c for c in recorded):
            raise RunRecordError(f"{path}: no 'labelled_cases' (a list of {{'case': id, ...}}).")
        labelled = tuple(case["case"] for case in recorded)
        if labelled != draw.labelled:
            raise RunRecordError(f"{path}: it records the labelled cases {list(labelled)}, but the splits draw "
                                 f"{list(draw.labelled)} for its seed and setting.")
        if sorted(record.result.test.cases) != sorted(draw.test):
            raise RunRecordError(f"{path}: its test cases are not the splits' test set {sorted(draw.test)}.")
    return record


def reconstruct_draw(config: Mapping) -> Draw | None:
    """A run's draw made again from its configuration: the dataset's cases (:func:`dataset_entries`), its
    ``splits``, the run's seed and setting, as :meth:`semcl_benchmark.datasets.BenchmarkData.prepare` drew it;
    ``None`` for a configuration without ``splits`` (v1).

    Raises:
        ValueError: the dataset cannot be made again or read (e.g. a retuned phantom preset, a moved dataset).
    """
    data = config.get("data") or {}
    splits = data.get("splits")
    if splits is None:
        return None
    fixed = fixed_splits(dataset_entries(data), splits["test"], splits["validation"], splits["training_pool"],
                         seed=data.get("seed", 0))
    setting = config.get("setting")
    counts = labelled_counts([setting]) if setting not in (None, UPPER_BOUND) else []
    datalist = seed_datalist(fixed, config["seed"], counts, splits["pretraining_pool"])
    return Draw.from_datalist(datalist, setting, reconstructed=True)


def dataset_entries(data: Mapping) -> list[dict]:
    """The cases of a run's dataset in ``dataset.json``'s order (``image`` and, where known, ``contrast_phase``): a
    user's (``data["dataset_dir"]``), or the phantoms of the recorded generator settings, made again.

    Raises:
        ValueError: a user's ``dataset.json`` is gone or unreadable, or the phantoms' preset was retuned since.
    """
    if "dataset_dir" in data:
        path = Path(data["dataset_dir"]) / "dataset.json"
        dataset = read_json(path, fix="The run's draw is reconstructed from the dataset it was made from.")
        return [{k: e[k] for k in ("image", "contrast_phase") if k in e} for e in dataset.get("training", [])]
    size = data["size"]
    shape = tuple(size) if isinstance(size, (list, tuple)) else (size,) * 3
    return list(_phantom_entries(data.get("preset", "simple"), data["num"], data.get("seed", 0), shape,
                                 data.get("preset_fingerprint")))


@functools.lru_cache(maxsize=8)
def _phantom_entries(preset: str, num: int, seed: int, size: tuple[int, ...],
                     fingerprint: str | None) -> tuple[dict, ...]:
    """The phantom dataset's entries (:func:`semcl_phantoms.phantoms.write_phantom_dataset`): each phantom's
    contrast phase, generated again (about 0.2 s a phantom at 64 x 64 x 48; once per process)."""
    from semcl_phantoms.phantoms import generate_phantom, preset_fingerprint

    if fingerprint != preset_fingerprint(preset):
        raise ValueError(f"the runs were made from phantoms of preset fingerprint {fingerprint}, and the {preset!r} "
                         f"preset now has {preset_fingerprint(preset)}: its phantoms are no longer those of the run.")
    entries = []
    for index in range(num):
        entry = {"image": f"./imagesTr/phantom_{index:03d}.nii.gz"}
        if preset != "simple":
            entry["contrast_phase"] = generate_phantom(size, seed=(seed, index), preset=preset).phase
        entries.append(entry)
    return tuple(entries)


# ------------------------------------------------------------------------------------------- reading, writing


def write_run_record(record: RunRecord, path: str | os.PathLike) -> None:
    """Write ``record`` to ``path`` atomically (a reader never sees a cut file).

    Raises:
        ValueError: ``record`` is not of :data:`SCHEMA_VERSION` (version-2 files are evidence, never rewritten).
    """
    if record.schema_version != SCHEMA_VERSION:
        raise ValueError(f"{path}: only records of schema version {SCHEMA_VERSION} are written, not "
                         f"{record.schema_version} (a version-2 file is read, never rewritten).")
    write_json_atomic(record.to_json(), path)


def read_run_record(path: str | os.PathLike) -> RunRecord:
    """The record in the result file ``path``, of either schema version.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not valid JSON, or (:class:`RunRecordError`) not a run record of a known schema;
            the message names the file.
    """
    return parse_run_record(read_json(path, fix="Move it away, or repeat its run."), path)


def parse_run_record(data: Any, path: str | os.PathLike = "<record>") -> RunRecord:
    """The record in a result file's content ``data`` (read from ``path``, for messages), of either schema version.

    Raises:
        RunRecordError: ``data`` is not a run record of a known schema; the message names ``path``.
    """
    if isinstance(data, Mapping) and "schema_version" in data:
        return RunRecord.from_json(data, path)
    return read_v2_record(data, path)


def read_run_records(folder: str | os.PathLike) -> list[RunRecord]:
    """Every run record in a results folder, sorted by key: its files named ``<run key>.json`` (other files, such as
    ``cost_ratio.json``, are not run records).

    Raises:
        ValueError: a result file that is not valid JSON or not a run record, named.
    """
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            RunKey.parse(path.stem)
        except ValueError:
            continue
        records.append(read_run_record(path))
    return records
