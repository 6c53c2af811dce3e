"""``CheckpointResumer``: continue an interrupted training from the last epoch checkpoint of its folder."""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from ..distributed import is_rank_zero
from ..folder_lock import FolderLock
from ..settings import as_bool
from .checkpoint_loader import first_line

__all__ = ["CheckpointResumer", "epoch_checkpoints"]

logger = logging.getLogger(__name__)


def epoch_checkpoints(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> list[tuple[str, int]]:
    """``(path, N)`` of the ``{prefix}_epoch=N.pt`` files in ``ckpt_dir`` (MONAI CheckpointSaver's naming), newest
    first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(str(ckpt_dir)), f"{prefix}_epoch=*.pt")):
        match = re.search(r"_epoch=(\d+)\.pt$", path)
        if match:
            found.append((path, int(match.group(1))))
    return sorted(found, key=lambda item: item[1], reverse=True)


class CheckpointResumer:
    """Continue an interrupted training from the last epoch checkpoint in ``ckpt_dir``.

    Pair it with an :class:`AtomicCheckpointSaver` attached to the trainer that writes
    ``checkpoint_epoch=N.pt`` every epoch (``save_interval=1``, ``n_saved=1``) and whose
    ``save_dict`` holds the objects of ``load_dict`` plus this resumer (``"resume_state": @this``), so that the best
    validation metric and the key-metric saver's record survive the restart too. At ``Events.STARTED`` the latest
    checkpoint, if any, is loaded with MONAI's ``CheckpointLoader`` (network, optimizer, scheduler and trainer
    epoch/iteration); the trainer then continues with the next epoch. Without a checkpoint, or with
    ``enabled=False``, a new run starts from the network's initial weights (random, or loaded before: a pretrained
    encoder, MONAI Label's model) and says so.

    With :class:`AtomicCheckpointSaver` a killed run cannot leave a truncated checkpoint. Files written by other
    means (MONAI's in-place ``CheckpointSaver``, a full disk) can still be unreadable: such a file is skipped with a
    warning and the next older one is used. The checkpoints found at the start are removed only once this session
    has written a checkpoint of its own, so a kill at any moment leaves at least one usable checkpoint.

    While the trainer runs, the resumer holds a :class:`~semcl_components.folder_lock.FolderLock` on ``ckpt_dir``: a
    second run on the same folder stops at once, naming the first; so does a run whose ``ckpt_dir`` is not writable.

    It is deliberately not a ``CheckpointLoader`` in ``train#handlers``: MONAI Label inserts its own loader there
    unless one already exists.

    Args:
        ckpt_dir: folder of the epoch checkpoints.
        load_dict: objects to restore, e.g. ``{"network": ..., "optimizer": ..., "trainer": ...}``.
        enabled: set False (or ``"false"``, any case) to start from scratch; the old checkpoints are removed once
            this session has written its first one.
        evaluator: the validation evaluator whose ``best_metric`` / ``best_metric_epoch`` are restored.
        key_metric_saver: the ``CheckpointSaver`` writing the best model, told which score its file holds.
        key_metric_filename: that saver's file name (e.g. ``"model.pt"``).
        map_location: passed to ``torch.load``.
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        load_dict: Mapping[str, Any],
        enabled: bool = True,
        evaluator: Engine | None = None,
        key_metric_saver: CheckpointSaver | None = None,
        key_metric_filename: str | None = None,
        map_location: Any = "cpu",
    ) -> None:
        self.ckpt_dir = str(ckpt_dir)
        self.load_dict = dict(load_dict)
        self.enabled = as_bool(enabled, "resume")
        self.evaluator = evaluator
        self.key_metric_saver = key_metric_saver
        self.key_metric_filename = key_metric_filename
        self.map_location = map_location
        self.resumed_from: str | None = None
        self.lock = FolderLock(self.ckpt_dir, "ckpt_dir")
        self._found_at_start: dict[str, tuple[int, int, int]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.EPOCH_STARTED, self.remove_superseded)
        engine.add_event_handler(Events.COMPLETED, self.remove_superseded)
        engine.add_event_handler(Events.COMPLETED, self.release)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._release_and_reraise)

    def remove_superseded(self, engine: Engine | None = None) -> None:
        """Delete the checkpoints found at the start once this session has written one of its own.

        The saver's ``n_saved`` only prunes files of its own session, so without this every interruption would leave
        one stale ``checkpoint_epoch=N.pt`` behind (and a disabled resume would leave them all, for a later resume to
        pick up). A file counts as this session's when it did not exist at the start or was replaced since (a new
        inode, size or time), so an unreadable newer file left by a kill never makes the usable older one go.
        Runs at each epoch start and at completion.
        """
        if not self._found_at_start:
            return
        current = {path: _identity(path) for path, _ in epoch_checkpoints(self.ckpt_dir)}
        written = [path for path, identity in current.items() if self._found_at_start.get(path) != identity]
        if not written:
            return  # this session has not saved yet
        for path, identity in self._found_at_start.items():
            if current.get(path) == identity:
                os.remove(path)
                logger.info(f"removed {path}: superseded by {written[0]}.")
        self._found_at_start = {}

    def release(self, engine: Engine | None = None) -> None:
        """Release the lock on ``ckpt_dir`` (at completion or on an exception)."""
        self.lock.release()

    def _release_and_reraise(self, engine: Engine, error: BaseException) -> None:
        self.release()
        raise error

    def state_dict(self) -> dict:
        state = {"best_metric": None, "best_metric_epoch": None}
        if self.evaluator is not None:
            state["best_metric"] = float(self.evaluator.state.best_metric)
            state["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        return state

    def load_state_dict(self, state: Mapping) -> None:
        if self.evaluator is None or state.get("best_metric_epoch") in (None, -1):
            return
        self.evaluator.state.best_metric = state["best_metric"]
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
        if self.key_metric_saver is not None and self.key_metric_filename:
            if os.path.isfile(os.path.join(self.ckpt_dir, self.key_metric_filename)):
                self.key_metric_saver.load_state_dict({"_saved": [(state["best_metric"], self.key_metric_filename)]})

    def __call__(self, engine: Engine) -> None:
        if is_rank_zero():  # in a distributed run, rank 0 holds the lock and prunes; every rank loads
            self.lock.acquire()
            self._found_at_start = {path: _identity(path) for path, _ in epoch_checkpoints(self.ckpt_dir)}
        if not self.enabled:
            logger.info("resume disabled: a new run starts from the network's initial weights.")
            return
        for path, epoch in epoch_checkpoints(self.ckpt_dir):
            try:
                checkpoint_keys = set(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as error:  # truncated by a kill during the save, or not a checkpoint at all
                logger.warning(f"skipping unreadable checkpoint {path} ({type(error).__name__}: {error}).")
                continue
            self._resume(engine, path, epoch, checkpoint_keys)
            return
        logger.info(f"no usable checkpoint in {self.ckpt_dir}: a new run starts from the network's initial weights.")

    def _resume(self, engine: Engine, path: str, epoch: int, checkpoint_keys: set[str]) -> None:
        load_dict = dict(self.load_dict)
        if "resume_state" in checkpoint_keys:
            load_dict["resume_state"] = self
        try:
            CheckpointLoader(load_path=path, load_dict=load_dict, map_location=self.map_location)(engine)
        except (RuntimeError, ValueError, KeyError) as error:
            raise RuntimeError(
                f"checkpoint {path} does not fit this run ({first_line(error)}): it was written by a run with other "
                "settings (network size, optimizer). Resume it with those settings, start over with --resume false, "
                "or give this run another --ckpt_dir."
            ) from error
        self.resumed_from = path
        done = engine.state.max_epochs is not None and epoch >= engine.state.max_epochs
        logger.info(
            f"resumed from {path} (epoch {epoch} of {engine.state.max_epochs})"
            + (": training had already finished." if done else f": continuing with epoch {epoch + 1}.")
        )


def _identity(path: str) -> tuple[int, int, int]:
    """``(inode, size, mtime)`` of a file: changes when the file is replaced or rewritten."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
