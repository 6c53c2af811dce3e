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

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["Arm", "BUILTIN_PROTOCOL", "Protocol", "Size", "load_protocol"]

BUILTIN_PROTOCOL = Path(__file__).with_name("protocol.yaml")
"""The arms and sizes of the committed benchmark."""

ARM_KEYS = ("random_init", "workflow", "overlay", "encoder_of", "finetune")
"""Keys of an arm's entry that are not pretraining workflow settings."""

PRETRAINING_WORKFLOWS = ("pretrain.yaml", "train.yaml")
"""Contrastive pretraining, or supervised segmentation on the pretraining pool."""

SIZE_MAPPINGS = ("data", "network", "pretrain", "finetune")
"""The settings of a size that decide a run's result (updated key by key from a ``base`` size)."""

SIZE_LISTS = ("arms", "settings", "seeds", "probe_seeds", "study_arms", "study_seeds")
"""The settings of a size that list what it plans."""


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
        """The arm whose pretraining gives this arm its encoders (``None``: random initialisation)."""
        return None if self.entry.get("random_init", False) else self.entry.get("encoder_of", self.name)

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

    def arm(self, name: str) -> Arm:
        """The arm of that name; a ``KeyError`` that names the known arms."""
        if name not in self.arms:
            raise KeyError(f"unknown arm {name!r}; the protocol has {', '.join(self.arms)}.")
        return self.arms[name]


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
        parent = _size(base, entries, protocol, (*seen, name)).__dict__
        entry = {**parent, **entry, **{k: {**parent[k], **entry[k]} for k in SIZE_MAPPINGS if k in entry}}
    entry["name"] = name
    entry.update({k: tuple(entry[k]) for k in SIZE_LISTS if k in entry})
    try:
        size = Size(**entry)
    except TypeError as error:
        fields = ", ".join(Size.__dataclass_fields__)
        raise ValueError(f"{where}: {error} (a size has {fields}).") from error
    for arm in size.arms + size.study_arms:
        if arm not in protocol.arms:
            raise ValueError(f"{where}: unknown arm {arm!r}; the protocol has {', '.join(protocol.arms)}.")
    return size
