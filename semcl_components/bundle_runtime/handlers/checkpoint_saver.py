"""``AtomicCheckpointSaver``: MONAI's ``CheckpointSaver`` that never leaves a truncated file or no checkpoint at all."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine
from ignite.handlers import DiskSaver
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

from ..atomic_io import free_space
from .checkpoint_loader import first_line

__all__ = ["AtomicCheckpointSaver"]

# what PyTorch's zip writer says when a write comes up short (a full disk, a quota, a file size limit)
_SHORT_WRITE_MESSAGES = ("unexpected pos", "file write failed")


class _SaveThenRemove(BaseSaveHandler):
    """Wrap ignite's ``DiskSaver`` so that a checkpoint is written atomically before the one it replaces is removed.

    ignite's ``Checkpoint`` removes the file that falls out of ``n_saved`` *before* writing the new one, and MONAI's
    saver writes in place, so a run killed at that moment keeps no checkpoint at all (or a truncated one). Here the
    file is written to a temporary name and renamed into place (ignite's atomic mode), and removals asked for in the
    meantime happen only after that write succeeded.
    """

    def __init__(self, disk_saver: DiskSaver) -> None:
        disk_saver._atomic = True
        self.disk_saver = disk_saver
        self.dirname = disk_saver.dirname
        self._pending: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        target = os.path.join(self.dirname, getattr(self.disk_saver, "filename", None) or filename)
        bad = _non_finite_entries(checkpoint)
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise RuntimeError(
                f"not writing {target}: the weights hold NaN or infinite values "
                f"({shown}); training diverged or read a non-finite input. The previous files are kept."
            )
        try:
            self.disk_saver(checkpoint, filename, metadata)
        except (OSError, RuntimeError) as error:
            raise _write_error(target, self.dirname, error) from error
        written = os.path.basename(getattr(self.disk_saver, "filename", None) or filename)
        for old in self._pending:
            if os.path.basename(getattr(self.disk_saver, "filename", None) or old) != written:
                self.disk_saver.remove(old)
        self._pending = []

    def remove(self, filename: str) -> None:
        self._pending.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` that never leaves a truncated file or a moment without a checkpoint.

    Every file it writes (interval, key-metric and final checkpoints) goes to a temporary file in the same folder and
    is renamed over its target (ignite's atomic mode, then made group/other readable), and a checkpoint that falls out
    of ``n_saved`` (or a fixed-name file being replaced) is removed only after its successor is complete. MONAI's own
    saver writes in place after removing the old file, so a run killed while saving can lose every checkpoint.

    A write that fails (a full disk) raises ``OSError`` naming the file and the free space; the previous files stay.
    Two more differences from MONAI's saver, so that a file this saver writes always comes from a sound run:
    weights holding NaN or infinite values are never written (``RuntimeError`` naming the file and the tensors), and
    the final file (``save_final``) is written only when the run completes, not when it stops on an exception (the
    epoch checkpoints keep the work of an interrupted run for resuming). Arguments are those of ``CheckpointSaver``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _SaveThenRemove(checkpoint.save_handler)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        """Re-raise without writing the final file: an interrupted or failed run has no final weights."""
        raise e


def _write_error(target: str, folder: str, error: BaseException) -> OSError:
    """The error for a checkpoint that could not be written: it names the file, and the free space when it ran out.

    PyTorch's own message for a short write (``[enforce fail at inline_container.cc:672] . unexpected pos``) names
    neither the file nor the cause.
    """
    out_of_space = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or any(
        text in str(error) for text in _SHORT_WRITE_MESSAGES
    )
    cause = f"the disk is probably full ({free_space(folder)})" if out_of_space else f"{free_space(folder)}"
    return OSError(
        f"could not write checkpoint {target} ({type(error).__name__}: {first_line(error)}): {cause}. The previous "
        "checkpoints are kept: free some space or give another --ckpt_dir, then run the same command again to continue."
    )


def _non_finite_entries(checkpoint: Mapping, prefix: str = "") -> list[str]:
    """Keys of floating tensors with a NaN or infinite value, anywhere in a nested checkpoint mapping."""
    found = []
    for key, value in checkpoint.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found += _non_finite_entries(value, f"{name}.")
        elif hasattr(value, "state_dict") and not isinstance(value, torch.Tensor):
            found += _non_finite_entries(value.state_dict(), f"{name}.")
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            found.append(name)
    return found
