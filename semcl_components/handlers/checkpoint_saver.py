"""``AtomicCheckpointSaver``: MONAI's ``CheckpointSaver`` that never leaves a truncated file or no checkpoint at all."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.handlers import DiskSaver
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


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
        self.disk_saver(checkpoint, filename, metadata)
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
    Arguments are those of ``CheckpointSaver``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _SaveThenRemove(checkpoint.save_handler)
