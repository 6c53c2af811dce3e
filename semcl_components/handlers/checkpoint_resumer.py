"""``CheckpointResumer``: continue an interrupted training from the last epoch checkpoint of its folder."""

from __future__ import annotations

import glob
import logging
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

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
    ``enabled=False``, training starts from scratch and says so.

    With :class:`AtomicCheckpointSaver` a killed run cannot leave a truncated checkpoint. Files written by other
    means (MONAI's in-place ``CheckpointSaver``, a full disk) can still be unreadable: such a file is skipped with a
    warning and the next older one is used.

    It is deliberately not a ``CheckpointLoader`` in ``train#handlers``: MONAI Label inserts its own loader there
    unless one already exists.

    Args:
        ckpt_dir: folder of the epoch checkpoints.
        load_dict: objects to restore, e.g. ``{"network": ..., "optimizer": ..., "trainer": ...}``.
        enabled: set False to always start from scratch (old checkpoints are then overwritten as training goes).
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
        self.enabled = enabled
        self.evaluator = evaluator
        self.key_metric_saver = key_metric_saver
        self.key_metric_filename = key_metric_filename
        self.map_location = map_location
        self.resumed_from: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.EPOCH_STARTED, self.remove_superseded)
        engine.add_event_handler(Events.COMPLETED, self.remove_superseded)

    def remove_superseded(self, engine: Engine | None = None) -> None:
        """Delete the checkpoints of earlier sessions once this session has saved a newer one.

        The saver's ``n_saved`` only prunes files of its own session, so without this every interruption would
        leave one stale ``checkpoint_epoch=N.pt`` behind. Runs at each epoch start and at completion.
        """
        if self.resumed_from is None:
            return
        checkpoints = epoch_checkpoints(self.ckpt_dir)
        resumed_epoch = next((epoch for path, epoch in checkpoints if path == self.resumed_from), None)
        if resumed_epoch is None or checkpoints[0][1] <= resumed_epoch:
            return  # nothing newer written yet
        for path, epoch in checkpoints:
            if epoch <= resumed_epoch:
                os.remove(path)
                logger.info(f"removed {path}: superseded by {checkpoints[0][0]}.")
        self.resumed_from = None

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
        if not self.enabled:
            logger.info("resume disabled: training starts from scratch.")
            return
        for path, epoch in epoch_checkpoints(self.ckpt_dir):
            try:
                checkpoint_keys = set(torch.load(path, map_location="cpu", weights_only=True))
            except (EOFError, RuntimeError, pickle.UnpicklingError) as error:  # truncated by a kill during the save
                logger.warning(f"skipping unreadable checkpoint {path} ({type(error).__name__}: {error}).")
                continue
            self._resume(engine, path, epoch, checkpoint_keys)
            return
        logger.info(f"no usable checkpoint in {self.ckpt_dir}: training starts from scratch.")

    def _resume(self, engine: Engine, path: str, epoch: int, checkpoint_keys: set[str]) -> None:
        load_dict = dict(self.load_dict)
        if "resume_state" in checkpoint_keys:
            load_dict["resume_state"] = self
        CheckpointLoader(load_path=path, load_dict=load_dict, map_location=self.map_location)(engine)
        self.resumed_from = path
        done = engine.state.max_epochs is not None and epoch >= engine.state.max_epochs
        logger.info(
            f"resumed from {path} (epoch {epoch} of {engine.state.max_epochs})"
            + (": training had already finished." if done else f": continuing with epoch {epoch + 1}.")
        )
