"""Atomic file writing: a file is written under a temporary name in its folder and renamed into place.

A reader (or a rerun after a kill) therefore sees either the previous complete file or the new complete one, never
a truncated file. Every writer of the package (run summaries, benchmark results, and inference outputs through
:class:`AtomicITKWriter`) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monai.data import ITKWriter

__all__ = ["AtomicITKWriter", "atomic_write", "write_json_atomic"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it onto ``path`` (else remove it).

    The temporary name keeps ``path``'s suffixes (e.g. ``.nii.gz``) so that writers choosing a format by suffix work.
    The parent folder is created if needed.

    Example::

        with atomic_write("out/seg.nii.gz") as tmp:
            nibabel.save(image, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)]
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp's 0600 would make results unreadable to the group
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically; tensors and numpy scalars become numbers or lists."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


class AtomicITKWriter(ITKWriter):
    """MONAI's ``ITKWriter`` writing atomically: a kill while saving keeps the previous file, never a truncated one.

    For ``SaveImage(d)(writer=AtomicITKWriter)``; the format still follows the file name's suffix.
    """

    def write(self, filename: str | os.PathLike, verbose: bool = False, **kwargs: Any) -> None:
        with atomic_write(filename) as tmp:
            super().write(tmp, verbose=verbose, **kwargs)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        return value.tolist() if value.numel() > 1 else float(value.item())
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)
