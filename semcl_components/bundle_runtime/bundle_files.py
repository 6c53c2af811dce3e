"""The settings files kept in a workflow run's bundle folder (``configs/common.yaml``, the metadata) and paths in it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
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
    ``--config_file`` (MONAI Label and other Python callers). Only
    :attr:`~.workflow_settings.TrainSettings.resume_from_checkpoint` reads it (a command line resumes, MONAI Label's
    training does not); the configs never read the command line (their ``bundle_root`` is the working directory, the
    model zoo's convention, unless ``--bundle_root`` names another).
    """
    from .overrides import parse_cli_overrides, typed_cli_value

    value = parse_cli_overrides(sys.argv[1:] if argv is None else argv).get("config_file")
    if value is None:
        return []
    files = typed_cli_value(value)
    if isinstance(files, str):
        files = [files] if os.path.isfile(files) or "," not in files else files.split(",")
    return [str(f).strip() for f in files]


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """A mapping kept in a bundle file, as a dict: the shared settings (``configs/common.yaml``) or the metadata.

    Each workflow config reads the shared settings once (its ``common`` item: :func:`read_bundle_config`) and names
    each one at its top level (``pixdim``: :func:`shared_setting`), so a dataset change is made in that one file
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
    """:func:`read_settings` of ``<bundle_root>/configs/<name>``: ``common.yaml`` or ``metadata.json``.

    Raises:
        FileNotFoundError: the file does not exist; the message names it and ``--bundle_root`` (``bundle_root`` is the
            working directory unless a command names another, so a command run from elsewhere stops here).
    """
    path = Path(bundle_root) / "configs" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {os.path.abspath(bundle_root)} is not the bundle folder. Run the command from the"
            " bundle folder or name it with --bundle_root."
        )
    return read_settings(path)


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
