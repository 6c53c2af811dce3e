"""Atomic file writing: a file is written under a temporary name in its folder and renamed into place.

A reader (or a rerun after a kill) therefore sees either the previous complete file or the new complete one, never
a truncated file. Every writer of the package (run summaries, benchmark results, and inference outputs through
:class:`AtomicITKWriter`) goes through :func:`atomic_write`. A write that fails for want of space (a full disk, a
quota, a file size limit) names the file and the free space; a writer that does not report such a failure (ITK) has
its file checked before it is renamed into place. :func:`read_json` reads such a file back, naming a damaged one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monai.config import NdarrayOrTensor
from monai.data import ITKWriter

from .input_checks import incomplete_nifti

__all__ = ["AtomicITKWriter", "atomic_write", "free_space", "read_json", "write_json_atomic"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it onto ``path`` (else remove it).

    The temporary name keeps ``path``'s suffixes (e.g. ``.nii.gz``) so that writers choosing a format by suffix work.
    The parent folder is created if needed. An ``OSError`` for want of space (``ENOSPC``, ``EDQUOT``, ``EFBIG``),
    whose message would name no file, is raised again naming ``path`` and the free space.

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
    except OSError as error:
        if error.errno not in _NO_SPACE:
            raise
        raise OSError(
            error.errno,
            f"could not write {path}: {error.strerror} ({free_space(path.parent)}); the previous file, if any, is "
            "kept. Free some space (or write elsewhere) and run again",
        ) from error
    finally:
        if tmp.exists():
            tmp.unlink()


def free_space(folder: str | os.PathLike) -> str:
    """The free space of the file system holding ``folder``, in words, e.g. ``"1.2 MB free on /data"``."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"free space on {folder} unknown"
    size = float(free)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            break
        size /= 1000
    shown = f"{free} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
    return f"{shown} free on {folder}"


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically; tensors and numpy scalars become numbers or lists."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike, fix: str = "") -> Any:
    """The content of a JSON file; a missing or damaged file is named (``json`` itself names neither file nor cause).

    Files this package writes are never left cut short (:func:`write_json_atomic`), but a copy, a sync or another
    writer can cut them. ``fix`` (what the user can do, e.g. ``"Move it away and rerun to repeat that run."``) ends
    the message.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not valid JSON (the message gives the position).
    """
    path = Path(path)
    suffix = f" {fix}" if fix else ""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.{suffix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON (line {error.lineno} column {error.colno}: {error.msg}): the file is cut short "
            f"or damaged.{suffix}"
        ) from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a JSON text file ({error.reason}): the file is damaged.{suffix}") from error


class AtomicITKWriter(ITKWriter):
    """MONAI's ``ITKWriter`` writing atomically: a kill or a full disk while saving keeps the previous file.

    For ``SaveImage(d)(writer=AtomicITKWriter)``; the format still follows the file name's suffix. ITK reports no
    error when a write fails (a full disk leaves an empty or cut file), so the temporary file is checked before it
    replaces ``filename``: a NIfTI file must hold all the voxel data its header announces, any other format must not
    be empty. A failed check raises ``OSError`` naming the file and the free space.

    Unlike MONAI's writer, it keeps every spatial dimension: a single channel is dropped, but a volume of one slice
    ``(1, H, W, 1)`` is written as the 3D ``(H, W, 1)`` image it is, with its slice spacing (MONAI's
    ``squeeze_end_dims`` would make it a 2D image and lose the third axis of its affine).
    """

    def set_data_array(
        self, data_array: NdarrayOrTensor, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs: Any
    ) -> None:
        """As ``ITKWriter.set_data_array`` with ``squeeze_end_dims`` applied to the channel dimension only."""
        if squeeze_end_dims and channel_dim is not None and data_array.shape[channel_dim] == 1:
            data_array, channel_dim = data_array[(slice(None),) * (channel_dim % data_array.ndim) + (0,)], None
        super().set_data_array(data_array, channel_dim=channel_dim, squeeze_end_dims=False, **kwargs)

    def write(self, filename: str | os.PathLike, verbose: bool = False, **kwargs: Any) -> None:
        with atomic_write(filename) as tmp:
            super().write(tmp, verbose=verbose, **kwargs)
            problem = _incomplete_image(tmp)
            if problem:
                raise OSError(
                    f"could not write {filename}: ITK wrote an incomplete file ({problem}); the disk may be full "
                    f"({free_space(tmp.parent)}). The previous file, if any, is kept. Free some space and run again."
                )


def _incomplete_image(path: Path) -> str | None:
    """Why a just-written image file is incomplete, or ``None``."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return incomplete_nifti(path)
    return "the file is empty" if path.stat().st_size == 0 else None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        return value.tolist() if value.numel() > 1 else float(value.item())
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)
