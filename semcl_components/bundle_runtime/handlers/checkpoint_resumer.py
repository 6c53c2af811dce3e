"""``CheckpointResumer``: continue an interrupted training from the last epoch checkpoint of its folder.

The loading is MONAI's ``CheckpointLoader`` (ignite's ``Checkpoint.load_objects``, keeping this run's
``max_epochs``). Finding the checkpoint stays here (:func:`epoch_checkpoints`): ignite's ``Checkpoint.last_checkpoint``
knows only the files its saver wrote in this process, and a resume has to find them on disk, newest first, and skip
unreadable ones.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from ..folder_lock import FolderLock
from ..overrides import as_bool
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

    A checkpoint continues only the run that wrote it: with ``run_settings`` (the dataset, split and the settings
    that shape the model and the optimisation), the resumer records them in every checkpoint (through
    ``resume_state``), and a resume whose settings differ from the checkpoint's record stops with a ``ValueError``
    naming each difference and the ways to start a new run. The check runs when the resumer is attached, before the
    trainer starts, so a refused run writes nothing (no run summary, no checkpoint). Settings left out of the record,
    such as ``max_epochs``, may change: a finished run continues with more epochs. A checkpoint without a record
    (written before runs recorded their settings) resumes with a warning.

    While the trainer runs, the resumer holds a :class:`~semcl_components.bundle_runtime.folder_lock.FolderLock` on ``ckpt_dir``: a
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
        run_settings: the settings that define this run (plain values: strings, numbers, lists, mappings), e.g.
            ``{"dataset_dir": ..., "train_key": ..., "learning_rate": ...}``; None: nothing recorded or compared.
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
        run_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.ckpt_dir = str(ckpt_dir)
        self.load_dict = dict(load_dict)
        self.enabled = as_bool(enabled, "resume")
        self.evaluator = evaluator
        self.key_metric_saver = key_metric_saver
        self.key_metric_filename = key_metric_filename
        self.map_location = map_location
        self.run_settings = _plain(run_settings) if run_settings is not None else None
        self.resumed_from: str | None = None
        self.lock = FolderLock(self.ckpt_dir, "ckpt_dir")
        self._found_at_start: dict[str, tuple[int, int, int]] = {}

    def attach(self, engine: Engine) -> None:
        """Attach to the trainer; a checkpoint of another run (other ``run_settings``) stops here, before any work."""
        if self.enabled and self.run_settings is not None:
            latest = next(self._readable_checkpoints(), None)
            if latest is not None:
                self._check_settings(*latest)
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
        state = {"best_metric": None, "best_metric_epoch": None, "run_settings": self.run_settings}
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
        if idist.get_rank() == 0:  # in a distributed run, rank 0 holds the lock and prunes; every rank loads
            self.lock.acquire()
            self._found_at_start = {path: _identity(path) for path, _ in epoch_checkpoints(self.ckpt_dir)}
        if not self.enabled:
            logger.info("resume disabled: a new run starts from the network's initial weights.")
            return
        for path, epoch, checkpoint in self._readable_checkpoints():
            if self.run_settings is not None:
                self._check_settings(path, epoch, checkpoint)  # again: the folder was not locked when attached
            self._resume(engine, path, epoch, set(checkpoint))
            return
        logger.info(f"no usable checkpoint in {self.ckpt_dir}: a new run starts from the network's initial weights.")

    def _readable_checkpoints(self) -> Iterator[tuple[str, int, Mapping]]:
        """``(path, epoch, content)`` of the epoch checkpoints that load, newest first; unreadable ones are skipped."""
        for path, epoch in epoch_checkpoints(self.ckpt_dir):
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # truncated by a kill during the save, or not a checkpoint at all
                logger.warning(f"skipping unreadable checkpoint {path} ({type(error).__name__}: {error}).")
                continue
            yield path, epoch, checkpoint

    def _check_settings(self, path: str, epoch: int, checkpoint: Mapping) -> None:
        """Raise if the checkpoint's recorded run settings differ from this run's (see the class docstring)."""
        recorded = (checkpoint.get("resume_state") or {}).get("run_settings")
        if recorded is None:
            logger.warning(
                f"checkpoint {path} records no run settings (written before runs recorded them), so they cannot be "
                "compared with this run's: it is resumed as it is."
            )
            return
        differences = [
            f"{key} {_shown(recorded, key)} then, {_shown(self.run_settings, key)} now"
            for key in list(recorded) + [k for k in self.run_settings if k not in recorded]
            if recorded.get(key, _MISSING) != self.run_settings.get(key, _MISSING)
        ]
        if differences:
            raise ValueError(
                f"checkpoint {path} belongs to a run with other settings: {'; '.join(differences)}. Resuming would "
                f"continue that run (epoch {epoch}) and keep its model.pt under the new settings. To continue it, "
                "repeat its settings; to start a new run, give it another --ckpt_dir (every run of a bundle defaults "
                f"to the same one), or add --resume false to replace the checkpoints in {self.ckpt_dir} and, at the "
                "new run's first validation, its model.pt."
            )

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


_MISSING = "<not set>"


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as JSON values (tuples as lists, paths and devices as strings), as a checkpoint records them."""
    return json.loads(json.dumps(dict(settings), default=str))


def _shown(settings: Mapping[str, Any], key: str, limit: int = 160) -> str:
    """A recorded value for a message; a long one (e.g. the list of training images) shortened, with its length."""
    value = settings.get(key, _MISSING)
    if value is _MISSING:
        return value
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[:limit] + "..." + (f" ({len(value)} entries)" if isinstance(value, (list, dict)) else "")


def _identity(path: str) -> tuple[int, int, int]:
    """``(inode, size, mtime)`` of a file: changes when the file is replaced or rewritten."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
