"""The bundle's default dataset: the embedded phantoms, written on first use so every workflow runs without a download."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ensure_phantom_dataset"]


def ensure_phantom_dataset(
    folder: str | os.PathLike,
    num: int | None = None,
    seed: int | None = None,
    size: Sequence[int] | None = None,
    preset: str | None = None,
    phantom_folder: str | os.PathLike | None = None,
) -> str:
    """Return ``folder``, writing the embedded phantom dataset there first if it is the bundle's phantom folder and
    holds no dataset yet.

    The bundle configs use this for the default ``dataset_dir``, so every workflow runs on a fresh machine without a
    download. Phantoms are written only into ``phantom_folder`` (the bundle's ``<bundle_root>/data/phantoms``; None:
    ``folder`` is that folder), and only while it is missing or empty: any other folder, e.g. a mistyped or a user's
    ``--dataset_dir``, is returned as it is and never written to. A folder that already has a ``dataset.json`` is
    used as it is. ``preset``: ``simple`` or ``realistic`` (its spacing is its field of view / ``size``: set the
    workflows' ``pixdim`` to match, see ``docs/PHANTOMS.md``).

    Raises:
        FileNotFoundError: ``folder`` is not the phantom folder and does not exist (a mistyped ``--dataset_dir``).
        ValueError: the phantom folder holds other files but no ``dataset.json`` (they are left alone).
    """
    folder = Path(folder)
    if phantom_folder is not None and os.path.abspath(folder) != os.path.abspath(phantom_folder):
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset_dir {folder} does not exist or is not a folder; check --dataset_dir.")
        return str(folder)
    if not (folder / "dataset.json").is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise ValueError(
                f"{folder} holds files but no dataset.json, so it is neither a dataset nor the bundle's phantoms; the "
                "phantoms are written only into a missing or empty folder. Give your data's folder as --dataset_dir "
                "(with its datalist.json), or move those files away to have the phantoms written there."
            )
        from semcl_phantoms.phantoms import PHANTOM_SETS, write_phantom_dataset

        default = PHANTOM_SETS["bundle"]
        num, seed = default.num if num is None else num, default.seed if seed is None else seed
        size, preset = default.size if size is None else size, default.preset if preset is None else preset
        print(
            f"[semcl] no dataset at {folder}: writing {num} {preset} phantoms of {tuple(size)} voxels there", flush=True
        )
        write_phantom_dataset(folder, num=num, seed=seed, size=size, preview=True, verbose=False, preset=preset)
    return str(folder)
