"""The bundle's workflow configs, generated from parts: ``config_parts/*.yaml`` -> ``configs/<workflow>.yaml``.

MONAI Label (``BundleInferTask``, ``BundleTrainTask``) and the model zoo's CI (``verify_bundle.py``, ``ckpt_export``)
load ``configs/inference.yaml`` or ``configs/train.yaml`` alone, by fixed names, and MONAI configs have no include: so
``pretrain.yaml``, ``train.yaml`` and ``inference.yaml`` are committed as complete files, and what they share is
written once, in a part of the bundle's ``config_parts/`` folder (which the model-zoo zip does not carry):

- ``base.yaml``: what the three workflows share (the components, the bundle folder, ``configs/common.yaml``'s
  settings named at the top level, the classes and channels from ``metadata.json``, the device);
- ``training.yaml``: what ``pretrain.yaml`` and ``train.yaml`` share (their dataset and deterministic transforms);
- ``<workflow>.yaml``: the items of that workflow alone.

A generated file is a header, then its parts verbatim, in the order of :data:`WORKFLOW_PARTS`, each under a line that
names it. The header is a notice naming the parts and the command that regenerates the file, followed by the
opening comment of the workflow's own part (what the workflow does, its command), so that it stays at the top. A
top-level key in two parts of one workflow is refused (in the concatenated text the later one would silently win),
and so is a part that is not a YAML mapping.

Usage:
    python scripts/assemble_configs.py          # (re)write configs/pretrain.yaml, train.yaml and inference.yaml
    python scripts/assemble_configs.py --check  # exit 1 naming every config that differs from its parts
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from .repository import BUNDLE, CONFIGS, ROOT

__all__ = [
    "COMMAND",
    "PARTS",
    "WORKFLOW_PARTS",
    "ConfigPartError",
    "assemble",
    "assemble_all",
    "main",
    "stale_configs",
    "write_configs",
]

PARTS = BUNDLE / "config_parts"
"""The folder of the parts (beside ``configs/``, not shipped in the model-zoo zip)."""

WORKFLOW_PARTS: Mapping[str, tuple[str, ...]] = {
    "pretrain.yaml": ("base.yaml", "training.yaml", "pretrain.yaml"),
    "train.yaml": ("base.yaml", "training.yaml", "train.yaml"),
    "inference.yaml": ("base.yaml", "inference.yaml"),
}
"""Each generated config (a file name in ``configs/``) and its parts (in ``config_parts/``), in order; the last part
is the workflow's own."""

COMMAND = "python scripts/assemble_configs.py"
"""The command that regenerates the configs, run from the repository root."""


class ConfigPartError(ValueError):
    """A part that cannot be assembled: not a YAML mapping, or a key that another part of the workflow also sets."""


def _shown(path: Path) -> str:
    """``path`` as messages name it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def top_level_keys(path: Path) -> list[str]:
    """The top-level keys of the YAML part ``path``, in order (a key written twice appears twice).

    Raises:
        ConfigPartError: naming the file, when it is not valid YAML or not a mapping.
    """
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        yaml.safe_load(text)  # tags and values too, not only the structure
    except yaml.YAMLError as error:
        raise ConfigPartError(f"{_shown(path)} is not valid YAML: {error}") from error
    if not isinstance(node, yaml.MappingNode):
        kind = "empty" if node is None else f"a YAML {node.id}, not a mapping"
        raise ConfigPartError(f"{_shown(path)} is {kind}: a config part must be a mapping of top-level keys.")
    return [key.value for key, _ in node.value]


def _check_keys(workflow: str, paths: Sequence[Path]) -> None:
    """Refuse a top-level key set twice among the parts of ``workflow`` (or in one of them), naming key and files."""
    owner: dict[str, Path] = {}
    problems = []
    for path in paths:
        for key in top_level_keys(path):
            if key in owner and owner[key] == path:
                problems.append(f"`{key}` is set twice in {_shown(path)}")
            elif key in owner:
                problems.append(f"`{key}` is set in both {_shown(owner[key])} and {_shown(path)}")
            else:
                owner[key] = path
    if problems:
        raise ConfigPartError(
            f"configs/{workflow}: a top-level key may be set once, by one of its parts (in the assembled file the "
            "later one would silently win): " + "; ".join(problems) + "."
        )


def _split_opening_comment(text: str) -> tuple[str, str]:
    """``text`` split into its opening comment (the ``#`` lines it starts with) and the rest, blank lines trimmed."""
    lines = text.splitlines(keepends=True)
    count = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(lines[:count]), "".join(lines[count:]).lstrip("\n")


def _notice(parts_dir: Path, parts: Sequence[str]) -> str:
    """The header lines that say the file is generated: from which parts, and how to regenerate it."""
    folder = parts_dir.name
    text = (
        f"GENERATED from the bundle's {folder}/ ({', '.join(parts)}, each copied below in this order; the folder is "
        f"in the source repository, not in the model-zoo zip). Do not edit this file: edit {folder}/..., then run "
        f"`{COMMAND.replace(' ', chr(0))}` from the repository root."  # the command is never broken across lines
    )
    return "".join(f"# {line}\n".replace(chr(0), " ") for line in textwrap.wrap(text, width=118))


def assemble(workflow: str, parts_dir: Path = PARTS, parts: Sequence[str] | None = None) -> str:
    """The text of ``configs/<workflow>``: its header, then each of its parts verbatim under a line naming it.

    Args:
        workflow: the config's file name, a key of :data:`WORKFLOW_PARTS` unless ``parts`` is given.
        parts_dir: the folder of the parts.
        parts: the part file names, in order (default: ``WORKFLOW_PARTS[workflow]``); the last is the workflow's own,
            whose opening comment opens the generated file.

    Raises:
        ConfigPartError: a part that is not a YAML mapping, or a top-level key in two parts (both files named).
    """
    parts_dir = Path(parts_dir)
    parts = tuple(WORKFLOW_PARTS[workflow] if parts is None else parts)
    paths = [parts_dir / name for name in parts]
    _check_keys(workflow, paths)
    texts = [path.read_text(encoding="utf-8") for path in paths]
    expected = {key: value for text in texts for key, value in yaml.safe_load(text).items()}
    opening, texts[-1] = _split_opening_comment(texts[-1])
    header = _notice(parts_dir, parts) + ("#\n" + opening if opening else "")
    body = "\n".join(f"# ==== {parts_dir.name}/{name} ====\n{text.rstrip()}\n" for name, text in zip(parts, texts))
    assembled = f"{header}\n{body}"
    try:
        same = yaml.safe_load(assembled) == expected
    except yaml.YAMLError:  # e.g. a part holding a document marker (`---`)
        same = False
    if not same:
        raise ConfigPartError(f"configs/{workflow}: its parts, concatenated, do not read as the union of their keys.")
    return assembled


def assemble_all(parts_dir: Path = PARTS) -> dict[str, str]:
    """The text of every generated config, by file name (:data:`WORKFLOW_PARTS`)."""
    return {workflow: assemble(workflow, parts_dir) for workflow in WORKFLOW_PARTS}


def _stale(texts: dict[str, str], configs_dir: Path) -> list[Path]:
    """The configs in ``configs_dir`` that are missing or differ from ``texts`` (by file name)."""
    paths = [Path(configs_dir) / workflow for workflow in texts]
    return [p for p in paths if not p.is_file() or p.read_text(encoding="utf-8") != texts[p.name]]


def stale_configs(parts_dir: Path = PARTS, configs_dir: Path = CONFIGS) -> list[Path]:
    """The configs in ``configs_dir`` that are missing or differ from what their parts assemble to."""
    return _stale(assemble_all(parts_dir), configs_dir)


def write_configs(parts_dir: Path = PARTS, configs_dir: Path = CONFIGS) -> list[Path]:
    """Write every generated config that differs from its parts (atomically); returns the files written."""
    # imported here: the package imports MONAI and torch, which --check and the tests of the parts do not need
    from semcl_components.bundle_runtime.atomic_io import atomic_write

    texts = assemble_all(parts_dir)  # every part is checked before any file is written
    written = []
    for path in _stale(texts, configs_dir):
        with atomic_write(path) as tmp:
            tmp.write_text(texts[path.name], encoding="utf-8")
        written.append(path)
    return written


def stale_message(stale: Sequence[Path], parts_dir: Path = PARTS) -> str:
    """What ``--check`` says about the stale configs: each file, and the command that regenerates them."""
    names = "\n".join(f"  {_shown(path)}" for path in stale)
    return f"out of date with {_shown(parts_dir)}/ (or edited by hand):\n{names}\nrun: {COMMAND}"


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/assemble_configs.py``: write the configs of :data:`PARTS` into :data:`CONFIGS`, or ``--check`` them.

    Returns:
        0 when the configs are (now) up to date; 1 when ``--check`` found a stale one (each named on stderr, with the
        command that regenerates them); 2 when a part is refused (:class:`ConfigPartError`, on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="assemble_configs.py",
        description=f"Generate the bundle's {', '.join(WORKFLOW_PARTS)} in {_shown(CONFIGS)}/ from {_shown(PARTS)}/.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every config out of date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_configs(PARTS, CONFIGS)
            if stale:
                print(stale_message(stale, PARTS), file=sys.stderr)
                return 1
            print(f"{', '.join(WORKFLOW_PARTS)}: up to date with {_shown(PARTS)}/")
            return 0
        written = write_configs(PARTS, CONFIGS)
    except ConfigPartError as error:
        print(f"assemble_configs: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {_shown(path)}")
    if not written:
        print(f"{', '.join(WORKFLOW_PARTS)}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
