"""The benchmark's protocol as data: arms (how an encoder is made) and sizes (what a run costs and which runs to plan).

The built-in protocol is ``protocol.yaml`` beside this module. A user adds an arm or a size, or changes one, without
touching the code: a YAML (or JSON) file of the same layout, passed as ``scripts/benchmark.py --protocol FILE``,
whose entries add to the built-in ones or replace those of the same name::

    arms:
      semcl_wide: {mask_mode: dilate, dilate_radius: 6}
    sizes:
      mine:
        base: default
        arms: [scratch, semcl_exact, semcl_wide]
        seeds: [0, 1, 2]

An arm's entry is recorded as written in its pretraining runs' configurations, so the configuration hashes of the
committed result files stay those of the entries in ``protocol.yaml``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .run_records import Recipe

__all__ = ["ATLAS_REGISTRATIONS", "Arm", "BUILTIN_PROTOCOL", "POOL_MASKS", "Protocol", "RecipeCandidate", "Size",
           "load_protocol", "load_protocol_or_exit"]

BUILTIN_PROTOCOL = Path(__file__).with_name("protocol.yaml")
"""The arms and sizes of the committed benchmark."""

ARM_KEYS = ("random_init", "workflow", "overlay", "encoder_of", "finetune", "atlas", "settings", "stage", "pool_masks")
"""Keys of an arm's entry that are not pretraining workflow settings."""

PRETRAINING_WORKFLOWS = ("pretrain.yaml", "train.yaml")
"""Contrastive pretraining, or supervised segmentation on the pretraining pool."""

ATLAS_REGISTRATIONS = ("as_is", "body_box", "centroid")
"""How an atlas arm moves each labelled map onto a test image (see :mod:`semcl_benchmark.atlas`)."""

SIZE_MAPPINGS = ("data", "network", "pretrain", "finetune", "splits", "draws", "refine")
"""The settings of a size that decide a run's result (updated key by key from a ``base`` size)."""

OWN_KEYS = ("report", "deviations", "difficulty_criteria", "recipes", "recipe_check")
"""Settings of a size that a size based on it does not take over (its report, its chosen recipes and the recipe check
its report reads are its own)."""

RECIPE_CHECK_KEYS = ("size", "baseline_size", "baseline_arm")
"""A size's ``recipe_check``: the size whose arms re-run with their chosen recipes, and the size and arm of the
committed runs they are compared with (v3's v2 recipe check, ``docs/PROTOCOL_v3.md`` section 4)."""

SIZE_LISTS = ("arms", "settings", "seeds", "tuning_seeds", "probe_seeds", "study_arms", "study_seeds", "probe_arms",
              "budget_fractions", "deviations", "recipe_arms", "oracle_arms")
"""The settings of a size that list what it plans."""

RECIPE_KEYS = ("encoder_lr_multiplier", "encoder_warmup_fraction", "encoder_freeze_fraction")
"""The settings of a recipe candidate."""

POOL_MASKS = ("stage1", "ground_truth")
"""Where a v3 stage-2 pretraining takes its pool's organ masks from: the seed's stage-1 predictions (the default) or
the ground truth (``cascade_semcl_gt``)."""


@dataclass(frozen=True)
class Arm:
    """One arm: how its encoder is made (see ``protocol.yaml``).

    Args:
        name: the arm's name in run keys, result files and the report.
        entry: the arm's entry as written in the protocol; recorded in its pretraining runs' configurations.
        study: whether the arm belongs to the shortcut study (planned only in a size's study setting and seeds).
    """

    name: str
    entry: Mapping = field(default_factory=dict)
    study: bool = False

    @property
    def source(self) -> str | None:
        """The arm whose pretraining gives this arm its encoders (``None``: random initialisation or an atlas)."""
        if self.entry.get("random_init", False) or self.atlas is not None:
            return None
        return self.entry.get("encoder_of", self.name)

    @property
    def atlas(self) -> str | None:
        """An atlas arm's registration (one of :data:`ATLAS_REGISTRATIONS`); ``None`` for a trained arm."""
        return self.entry.get("atlas")

    @property
    def stage(self) -> str | None:
        """The benchmark stage that makes this arm's runs when it is not pretraining and fine-tuning (``None``), e.g.
        v3's ``stage1`` (image-only at the coarse grid, scored at the fine one) or ``cascade`` (stage 2)."""
        return self.entry.get("stage")

    @property
    def pool_masks(self) -> str:
        """Where a stage-2 pretraining takes its pool's organ masks from (one of :data:`POOL_MASKS`; default
        ``stage1``: the seed's stage-1 predictions)."""
        return self.entry.get("pool_masks", "stage1")

    @property
    def settings(self) -> tuple[str, ...] | None:
        """The only labelled settings this arm is planned in (``None``: every setting of the size)."""
        settings = self.entry.get("settings")
        return None if settings is None else tuple(settings)

    @property
    def workflow(self) -> str:
        """The pretraining workflow: ``pretrain.yaml`` (contrastive) or ``train.yaml`` (supervised segmentation)."""
        return self.entry.get("workflow", "pretrain.yaml")

    @property
    def overlay(self) -> str | None:
        """A config file laid over the pretraining workflow."""
        return self.entry.get("overlay")

    @property
    def pretrain(self) -> dict:
        """The pretraining workflow settings (those of ``None`` value are left to the workflow)."""
        return {k: v for k, v in self.entry.items() if k not in ARM_KEYS}

    @property
    def finetune(self) -> dict:
        """Fine-tuning settings of this arm, over the size's."""
        return dict(self.entry.get("finetune", {}))


@dataclass(frozen=True)
class RecipeCandidate:
    """A candidate fine-tuning recipe of the recipe selection (``docs/PROTOCOL_v3.md`` section 5), its warm-up and
    freeze as fractions of the run's epoch cap.

    Args:
        name: the recipe's name (``R1``, ``R2``, ...); the earlier in the size's ``recipe_candidates`` wins a tie.
        encoder_lr_multiplier: the encoder's learning rate as a fraction of the decoder's.
        encoder_warmup_fraction: the share of the epoch cap over which the encoder's learning rate rises from 0.
        encoder_freeze_fraction: the share of the epoch cap at the start with the encoder frozen (a linear probe).

    Raises:
        ValueError: a multiplier below 0 or a fraction outside [0, 1), naming the recipe.
    """

    name: str
    encoder_lr_multiplier: float
    encoder_warmup_fraction: float = 0.0
    encoder_freeze_fraction: float = 0.0

    def __post_init__(self) -> None:
        for what in RECIPE_KEYS:
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"recipe {self.name}: {what} must be a number >= 0, got {value!r}.")
        if not self.encoder_warmup_fraction < 1 or not self.encoder_freeze_fraction < 1:
            raise ValueError(f"recipe {self.name}: a warm-up or freeze fraction must be below 1 (of the epoch cap).")

    def at_cap(self, max_epochs: int) -> Recipe:
        """The recipe for a run whose epoch cap is ``max_epochs``: each fraction in whole epochs (at least 1 where
        the fraction is not 0)."""

        def epochs(fraction: float) -> int:
            return max(1, round(fraction * max_epochs)) if fraction > 0 else 0

        return Recipe(self.name, float(self.encoder_lr_multiplier), epochs(self.encoder_warmup_fraction),
                      epochs(self.encoder_freeze_fraction))


@dataclass(frozen=True)
class Size:
    """Everything that decides a run's result at one benchmark size, plus which runs the size plans."""

    name: str
    data: dict
    network: dict
    pretrain: dict
    finetune: dict
    arms: tuple[str, ...]
    settings: tuple[str, ...]
    seeds: tuple[int, ...]
    probe_setting: str | None = None
    probe_seeds: tuple[int, ...] = ()
    study_arms: tuple[str, ...] = ()
    study_setting: str | None = None
    study_seeds: tuple[int, ...] = ()
    notes: str = ""
    splits: dict | None = None
    draws: dict | None = None
    tuning_seeds: tuple[int, ...] = ()
    stage1_pixdim: float | None = None
    refine: dict = field(default_factory=dict)  # v3: stage 2's training settings (train.yaml + train_refine.yaml)
    recipe_arms: tuple[str, ...] = ()
    recipe_candidates: dict = field(default_factory=dict)
    recipes: dict = field(default_factory=dict)
    oracle_arms: tuple[str, ...] = ()
    arm_settings: dict = field(default_factory=dict)
    setting_arms: dict = field(default_factory=dict)
    setting_seeds: dict = field(default_factory=dict)
    arm_seeds: dict = field(default_factory=dict)  # arm -> the only seeds it is planned on
    recipe_of: dict = field(default_factory=dict)  # arm -> the recipe arm whose chosen recipe it fine-tunes with
    probe_arms: tuple[str, ...] | None = None
    report: str | None = None
    budget_extensions: int = 0
    budget_fractions: tuple[float, ...] = ()
    deviations: tuple[dict, ...] = ()
    difficulty_criteria: bool = False
    recipe_check: dict | None = None

    def plans(self, arm: Arm, setting: str, seed: int | None = None) -> bool:
        """Whether ``arm`` is planned in ``setting`` (its own ``settings`` and the size's ``setting_arms`` allow it),
        and with ``seed`` when given (the size's ``setting_seeds`` and ``arm_seeds`` allow it; an arm that takes
        another's recipe, ``recipe_of``, has no tuning run)."""
        if arm.settings is not None and setting not in arm.settings:
            return False
        if seed is not None and setting in self.setting_seeds and seed not in self.setting_seeds[setting]:
            return False
        if seed is not None and arm.name in self.arm_seeds and seed not in self.arm_seeds[arm.name]:
            return False
        if seed is not None and arm.name in self.recipe_of and seed in self.tuning_seeds:
            return False
        return setting not in self.setting_arms or arm.name in self.setting_arms[setting]

    @property
    def drawn(self) -> bool:
        """Whether every seed draws its own datalist (v2's ``splits`` or v3's ``draws``), not the dataset's own."""
        return self.splits is not None or self.draws is not None

    def chosen_recipe(self, arm: str) -> str | None:
        """The name of the recipe the selection chose for ``arm`` (its ``recipes`` entry, or that of the arm whose
        recipe it takes: ``recipe_of``); ``None`` while none is recorded, or for an arm that chooses none."""
        return (self.recipes.get(self.recipe_of.get(arm, arm)) or {}).get("chosen")

    def recipe_for(self, arm: str, seed: int) -> Recipe | None:
        """The recipe a run of a recipe arm (``recipe_arms``) on a main seed fine-tunes with: the chosen candidate at
        stage 2's epoch cap (``refine``'s ``max_epochs``); ``None`` for an arm that chooses no recipe, and while the
        arm's choice is not recorded (such a run is refused: :meth:`semcl_benchmark.runner.Benchmark.refused`).

        Raises:
            ValueError: ``seed`` is a tuning seed (whose runs try every candidate: :meth:`tuning_recipes`).
        """
        if seed in self.tuning_seeds:
            raise ValueError(f"seed {seed} of size {self.name!r} is a tuning seed: its runs of {arm!r} try every "
                             f"candidate recipe ({', '.join(self.recipe_candidates)}), not the chosen one.")
        chosen = self.chosen_recipe(arm) if arm in self.recipe_arms or arm in self.recipe_of else None
        return None if chosen is None else self.recipe_candidates[chosen].at_cap(self._recipe_cap())

    def tuning_recipes(self) -> tuple[Recipe, ...]:
        """Every candidate recipe at the recipe arms' epoch cap, in the order that breaks ties (the tuning seeds'
        runs)."""
        return tuple(candidate.at_cap(self._recipe_cap()) for candidate in self.recipe_candidates.values())

    def recipe_runs(self, arm: str, seed: int) -> list[tuple[Recipe | None, str | None]]:
        """The fine-tuning runs of recipe arm ``arm`` on ``seed``, as ``(recipe, tuning candidate's name)``: one per
        candidate on a tuning seed; on a main seed one, with the chosen recipe (``None`` while none is recorded: the
        runner refuses that run) and no candidate name."""
        if seed in self.tuning_seeds:
            return [(recipe, recipe.name) for recipe in self.tuning_recipes()]
        return [(self.recipe_for(arm, seed), None)]

    def _recipe_cap(self) -> int:
        """The epoch cap the recipe arms fine-tune with: stage 2's (``refine``) in a cascade size (one with a
        ``stage1_pixdim``), the fine-tuning's (``finetune``) otherwise (v3's recipe check on v2's arms)."""
        cascade = self.stage1_pixdim is not None
        cap = (self.refine if cascade else self.finetune).get("max_epochs")
        if isinstance(cap, bool) or not isinstance(cap, int):
            raise ValueError(f"size {self.name!r}: {'refine' if cascade else 'finetune'} has no max_epochs, so its "
                             "recipes' warm-up and freeze epochs are not known (docs/PROTOCOL_v3.md, section 11: to "
                             "size).")
        return cap

    def probes(self, arm: Arm) -> bool:
        """Whether the frozen-encoder probe runs for ``arm`` (default: every pretrained arm)."""
        if arm.atlas is not None:
            return False
        return arm.source is not None if self.probe_arms is None else arm.name in self.probe_arms


@dataclass(frozen=True)
class Protocol:
    """The arms (main and study) and the sizes of a benchmark."""

    arms: dict[str, Arm]
    sizes: dict[str, Size]

    @property
    def main_arms(self) -> list[str]:
        return [name for name, arm in self.arms.items() if not arm.study]

    @property
    def study_arms(self) -> list[str]:
        return [name for name, arm in self.arms.items() if arm.study]

    def arm(self, name: str, size: Size | None = None) -> Arm:
        """The arm of that name, as ``size`` runs it (its ``arm_settings``); a ``KeyError`` naming the known arms."""
        if name not in self.arms:
            raise KeyError(f"unknown arm {name!r}; the protocol has {', '.join(self.arms)}.")
        arm = self.arms[name]
        if size is None or name not in size.arm_settings:
            return arm
        return Arm(name, {**arm.entry, **size.arm_settings[name]}, arm.study)


def load_protocol(files: Sequence[str | os.PathLike] = ()) -> Protocol:
    """The built-in protocol, extended (or overridden, entry by entry) by each of ``files`` in turn.

    Raises:
        ValueError: naming the file and the entry, when an entry is malformed or names an unknown arm or size.
    """
    arms: dict[str, tuple[dict, bool]] = {}
    sizes: dict[str, dict] = {}
    for path in [BUILTIN_PROTOCOL, *map(Path, files)]:
        content = _read(path)
        for section, study in (("arms", False), ("study_arms", True)):
            for name, entry in _mapping(content.get(section, {}), f"{path}: {section}").items():
                arms[name] = (dict(_mapping(entry, f"{path}: arm {name!r}")), study)
        for name, entry in _mapping(content.get("sizes", {}), f"{path}: sizes").items():
            sizes[name] = {**dict(_mapping(entry, f"{path}: size {name!r}")), "origin": path}
    protocol = Protocol({name: Arm(name, entry, study) for name, (entry, study) in arms.items()}, {})
    for arm in protocol.arms.values():
        _check_arm(arm, protocol)
    for name in sizes:
        protocol.sizes[name] = _size(name, sizes, protocol)
    return protocol


def _read(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except OSError as error:
        raise ValueError(f"protocol file {path} cannot be read: {error}.") from error
    except yaml.YAMLError as error:
        raise ValueError(f"protocol file {path} is not valid YAML or JSON: {error}") from error
    content = _mapping(content or {}, f"protocol file {path}")
    unknown = set(content) - {"arms", "study_arms", "sizes"}
    if unknown:
        raise ValueError(f"protocol file {path}: unknown section(s) {sorted(unknown)}; use arms, study_arms, sizes.")
    return dict(content)


def _mapping(value, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping (name: settings), got {type(value).__name__}: {value!r}.")
    return value


def _check_arm(arm: Arm, protocol: Protocol) -> None:
    where = f"protocol arm {arm.name!r}"
    if arm.workflow not in PRETRAINING_WORKFLOWS:
        raise ValueError(f"{where}: workflow must be one of {PRETRAINING_WORKFLOWS}, got {arm.workflow!r}.")
    if not isinstance(arm.entry.get("finetune", {}), Mapping):
        raise ValueError(f"{where}: finetune must be a mapping of fine-tuning settings, got {arm.entry['finetune']!r}.")
    if arm.atlas is not None and arm.atlas not in ATLAS_REGISTRATIONS:
        raise ValueError(f"{where}: atlas must be one of {ATLAS_REGISTRATIONS}, got {arm.atlas!r}.")
    if arm.pool_masks not in POOL_MASKS:
        raise ValueError(f"{where}: pool_masks must be one of {POOL_MASKS}, got {arm.pool_masks!r}.")
    if "encoder_of" in arm.entry:
        source = protocol.arms.get(arm.entry["encoder_of"])
        if source is None or source.source != source.name:
            raise ValueError(f"{where}: encoder_of must name an arm that pretrains its own encoders, got "
                             f"{arm.entry['encoder_of']!r}.")


def _size(name: str, entries: dict[str, dict], protocol: Protocol, seen: tuple[str, ...] = ()) -> Size:
    """A size from its entry, resolving ``base`` (mappings updated key by key, everything else replaced)."""
    entry = dict(entries[name])
    where = f"{entry.pop('origin')}: size {name!r}"
    base = entry.pop("base", None)
    for key in SIZE_MAPPINGS:
        if key in entry:
            _mapping(entry[key], f"{where}: {key}")
    if base is not None:
        if base not in entries or base in seen:
            raise ValueError(f"{where}: base {base!r} is not another size of the protocol ({', '.join(entries)}).")
        parent = {k: v for k, v in _size(base, entries, protocol, (*seen, name)).__dict__.items() if k not in OWN_KEYS}
        entry = {**parent, **entry, **{k: {**(parent.get(k) or {}), **entry[k]} for k in SIZE_MAPPINGS if k in entry}}
    entry["name"] = name
    entry.update({k: tuple(entry[k]) for k in SIZE_LISTS if k in entry})
    try:
        size = Size(**entry)
    except TypeError as error:
        fields = ", ".join(Size.__dataclass_fields__)
        raise ValueError(f"{where}: {error} (a size has {fields}).") from error
    named = [*size.arms, *size.study_arms, *size.arm_settings, *(size.probe_arms or ())]
    named += [arm for arms in size.setting_arms.values() for arm in arms]
    for arm in named:
        if arm not in protocol.arms:
            raise ValueError(f"{where}: unknown arm {arm!r}; the protocol has {', '.join(protocol.arms)}.")
    for key in ("arm_settings", "setting_arms", "setting_seeds", "arm_seeds", "recipe_of"):
        _mapping(getattr(size, key), f"{where}: {key}")
    if size.draws is not None and (size.splits is not None or size.draws.get("design") != "v3"):
        raise ValueError(f"{where}: draws: a size has either splits (v2) or draws with design: v3, got splits "
                         f"{size.splits!r} and draws {size.draws!r}.")
    for key in ("setting_seeds", "arm_seeds"):
        for name, seeds in getattr(size, key).items():
            if not isinstance(seeds, list) or not all(isinstance(seed, int) for seed in seeds):
                raise ValueError(f"{where}: {key}: {name}: {seeds!r} is not a list of seeds.")
    for arm in [*size.arm_seeds, *size.recipe_of]:
        if arm not in protocol.arms:
            raise ValueError(f"{where}: unknown arm {arm!r}; the protocol has {', '.join(protocol.arms)}.")
    _check_recipe_check(size, entries, protocol, where)
    shared = sorted(set(size.tuning_seeds) & set(size.seeds))
    if shared:
        raise ValueError(f"{where}: tuning_seeds {shared} are also among its seeds: the recipe selection's seeds are "
                         "never test seeds (docs/PROTOCOL_v3.md, section 3).")
    return _with_recipes(size, protocol, where)


def _check_recipe_check(size: Size, entries: dict[str, dict], protocol: Protocol, where: str) -> None:
    """A ``recipe_check`` names :data:`RECIPE_CHECK_KEYS`: two sizes of the protocol and an arm of it.

    Raises:
        ValueError: naming ``where`` and the entry.
    """
    if size.recipe_check is None:
        return
    check = _mapping(size.recipe_check, f"{where}: recipe_check")
    if set(check) != set(RECIPE_CHECK_KEYS) or any(check[k] not in entries for k in ("size", "baseline_size")) \
            or check["baseline_arm"] not in protocol.arms:
        raise ValueError(f"{where}: recipe_check must name the check's size, its baseline's size (sizes of the "
                         f"protocol: {', '.join(entries)}) and the baseline's arm ({', '.join(RECIPE_CHECK_KEYS)}), "
                         f"got {dict(check)!r}.")


def _with_recipes(size: Size, protocol: Protocol, where: str) -> Size:
    """``size`` with its recipe candidates read, after checking the recipe selection's entries and the oracle arms.

    Raises:
        ValueError: naming ``where`` and the entry.
    """
    candidates = {}
    for name, entry in _mapping(size.recipe_candidates, f"{where}: recipe_candidates").items():
        if isinstance(entry, RecipeCandidate):  # taken over from a base size, read already
            candidates[name] = entry
            continue
        entry = _mapping(entry, f"{where}: recipe_candidates: {name}")
        if set(entry) - set(RECIPE_KEYS) or "encoder_lr_multiplier" not in entry:
            raise ValueError(f"{where}: recipe_candidates: {name}: a candidate has encoder_lr_multiplier and may have "
                             f"{', '.join(RECIPE_KEYS[1:])}, got {dict(entry)!r}.")
        try:
            candidates[name] = RecipeCandidate(name, **entry)
        except ValueError as error:
            raise ValueError(f"{where}: recipe_candidates: {error}") from error
    for arm in size.recipe_arms:
        if arm not in protocol.arms or protocol.arm(arm, size).source is None:
            raise ValueError(f"{where}: recipe_arms: {arm!r} is not a pretrained arm of the protocol (only an arm that "
                             "fine-tunes a pretrained encoder chooses a recipe).")
    if size.recipe_arms and not candidates:
        raise ValueError(f"{where}: recipe_arms need recipe_candidates to choose from.")
    for arm, source in [(arm, source) for arm, source in size.recipe_of.items() if arm in size.arms]:
        if arm in size.recipe_arms or source not in size.recipe_arms \
                or protocol.arm(arm, size).source is None:
            raise ValueError(f"{where}: recipe_of: {arm}: {source!r}: a pretrained arm that chooses no recipe of its "
                             f"own takes that of one of the recipe_arms ({', '.join(size.recipe_arms) or 'none'}).")
    for arm, entry in _mapping(size.recipes, f"{where}: recipes").items():
        entry = _mapping(entry, f"{where}: recipes: {arm}")
        dice = entry.get("validation_dice")
        if arm not in size.recipe_arms:
            raise ValueError(f"{where}: recipes: {arm!r} is not one of its recipe_arms "
                             f"({', '.join(size.recipe_arms)}).")
        if entry.get("chosen") not in candidates or not isinstance(dice, Mapping) or set(dice) != set(candidates):
            raise ValueError(f"{where}: recipes: {arm}: an entry is {{chosen: one of {', '.join(candidates)}, "
                             "validation_dice: {each candidate: its mean tuning validation Dice}}, got "
                             f"{dict(entry)!r}.")
    for arm in size.oracle_arms:
        if arm not in size.arms or protocol.arm(arm, size).stage != "cascade":
            raise ValueError(f"{where}: oracle_arms: {arm!r} is not a cascade arm of the size (the oracle-prior "
                             "evaluation scores a stage-2 network).")
    return Size(**{**size.__dict__, "recipe_candidates": candidates})


def load_protocol_or_exit(parser: argparse.ArgumentParser, files: Sequence[str | os.PathLike],
                          sizes: Mapping[str, str]) -> Protocol:
    """:func:`load_protocol` for a command line: a malformed file, or a size named by an option (``{option: size}``)
    that the protocol lacks, stops the command with ``parser.error`` naming it."""
    try:
        protocol = load_protocol(files)
    except ValueError as error:
        parser.error(str(error))
    for option, name in sizes.items():
        if name not in protocol.sizes:
            parser.error(f"{option} {name}: the protocol has the sizes {', '.join(protocol.sizes)}.")
    return protocol
