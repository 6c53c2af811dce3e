"""The bundle folder of a workflow run and the settings files kept in it (``configs/common.yaml``, the metadata)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "bundle_root",
    "command_line_config_files",
    "file_if_present",
    "image_channels",
    "path_in",
    "read_bundle_config",
    "read_settings",
    "shared_setting",
]


def command_line_config_files(argv: Sequence[str] | None = None) -> list[str]:
    """The config files of ``--config_file`` on a ``python -m monai.bundle`` command line, as MONAI reads them.

    Both ``--config_file VALUE`` and ``--config_file=VALUE``; the value is one path, a Python list of paths
    (``"['a.yaml','b.yaml']"``, as python-fire reads it) or comma-separated paths (as ``ConfigParser`` splits a string
    that is not a file). Paths may hold spaces and any Unicode character. An empty list when there is no
    ``--config_file`` (MONAI Label and other Python callers).
    """
    from .overrides import parse_cli_overrides, typed_cli_value

    value = parse_cli_overrides(sys.argv[1:] if argv is None else argv).get("config_file")
    if value is None:
        return []
    files = typed_cli_value(value)
    if isinstance(files, str):
        files = [files] if os.path.isfile(files) or "," not in files else files.split(",")
    return [str(f).strip() for f in files]


def bundle_root(argv: Sequence[str] | None = None) -> str:
    """The bundle folder of a workflow run: the parent of the ``configs/`` folder of its first ``--config_file``.

    The configs' ``bundle_root`` item reads the command line the same way, so that every command runs from any
    working directory, also from a bundle folder whose path holds spaces or non-ASCII characters. Without
    ``--config_file`` on the command line (MONAI Label, the model zoo's CI and other Python callers, which set
    ``bundle_root`` themselves when they need another) it is the working directory, the model zoo's convention. The
    item repeats this function as a config expression because the configs find this package through it (the copy in
    ``<bundle_root>/scripts`` when none is installed); ``tests/test_bundle_utils_bundle_root.py`` holds both to the
    same answers.
    """
    files = command_line_config_files(argv)
    return os.path.dirname(os.path.dirname(os.path.abspath(files[0]))) if files else os.path.abspath(".")


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """A mapping kept in a bundle file, as a dict: the shared settings (``configs/common.yaml``) or the metadata.

    Each workflow config reads the shared settings once (``common: $...read_settings(@bundle_root + '/configs/common.yaml')``) and
    names each one at its top level (``pixdim: $@common['pixdim']``), so a dataset change is made in that one file
    while ``--pixdim`` on a command line still overrides it for one run. MONAI bundle configs have no include, and
    a ``%file#key`` macro is read relative to the working directory, so it would fail outside the bundle folder.
    The configs read ``configs/metadata.json`` the same way (classes and image channels), because MONAI Label loads a
    workflow config without its metadata (no ``_meta_``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it does not hold a mapping of settings.
    """
    from monai.bundle import ConfigParser

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shared settings file {path} does not exist (it belongs in the bundle's configs/).")
    settings = ConfigParser.load_config_file(path)
    if not isinstance(settings, Mapping):
        raise ValueError(f"shared settings file {path} must hold a mapping of settings, got {type(settings).__name__}.")
    return dict(settings)


def read_bundle_config(bundle_root: str | os.PathLike, name: str) -> dict[str, Any]:
    """:func:`read_settings` of ``<bundle_root>/configs/<name>``: ``common.yaml`` or ``metadata.json``."""
    return read_settings(Path(bundle_root) / "configs" / name)


def shared_setting(settings: Mapping[str, Any], name: str) -> Any:
    """One entry of the shared settings (``configs/common.yaml``), named at a workflow's top level (``pixdim``, ...).

    Raises:
        KeyError: the file has no such entry (the message lists those it has).
    """
    if name not in settings:
        raise KeyError(f"configs/common.yaml has no setting '{name}'; it has {sorted(settings)}.")
    return settings[name]


def image_channels(metadata: Mapping[str, Any]) -> int:
    """The image channels the network takes: ``network_data_format.inputs.image.num_channels`` of the metadata."""
    return int(metadata["network_data_format"]["inputs"]["image"]["num_channels"])


def path_in(folder: str | os.PathLike, name: str) -> str:
    """``folder/name``: a file or folder of a run (``<bundle_root>/models``, ``<output_dir>/run_summary.json``)."""
    return os.path.join(folder, name)


def file_if_present(folder: str | os.PathLike, name: str) -> str:
    """``folder/name`` if that file exists, else ``''`` (an optional input, e.g. a pretrained encoder in ``models/``)."""
    path = os.path.join(folder, name)
    return path if os.path.isfile(path) else ""
