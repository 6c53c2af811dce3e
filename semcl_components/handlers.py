"""Ignite handlers the bundle workflows need and MONAI lacks: resuming an interrupted run, and a run summary file."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import pickle
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader, CheckpointSaver

__all__ = [
    "CheckpointResumer",
    "RunSummaryWriter",
    "epoch_checkpoints",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist() if value.numel() > 1 else float(value.item())
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def epoch_checkpoints(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> list[tuple[str, int]]:
    """``(path, N)`` of the ``{prefix}_epoch=N.pt`` files in ``ckpt_dir`` (MONAI CheckpointSaver's naming), newest
    first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(str(ckpt_dir)), f"{prefix}_epoch=*.pt")):
        match = re.search(r"_epoch=(\d+)\.pt$", path)
        if match:
            found.append((path, int(match.group(1))))
    return sorted(found, key=lambda item: item[1], reverse=True)


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


class RunSummaryWriter:
    """Write a run's key numbers to a JSON file in its output folder, updated every epoch and at the end.

    Attached to a trainer, it records the mean of every scalar entry of the iteration output per epoch (``loss``,
    and for contrastive runs e.g. ``num_objects`` or ``positive_cosine``), the validation metrics after each epoch
    (from ``evaluator``), the best metric, epochs completed and wall time (summed over resumed sessions).
    Attached to an evaluator (``evaluator=None``), it records ``engine.state.metrics`` at completion.

    Args:
        output_file: the JSON file, e.g. ``$@output_dir + '/run_summary.json'``.
        workflow: a name for the run's kind (``"pretrain"``, ``"train"``, ``"evaluate"``...).
        evaluator: the validation evaluator of a trainer, if any.
        class_names: foreground class names; with them, per-class means of the metrics' per-case details
            (``engine.state.metric_details``, shape (cases, classes)) are recorded under ``per_class``.
        extra: constant entries to record (settings worth comparing between runs, e.g. the encoder's path).
    """

    def __init__(
        self,
        output_file: str | os.PathLike,
        workflow: str,
        evaluator: Engine | None = None,
        class_names: Sequence[str] | None = None,
        extra: Mapping | None = None,
    ) -> None:
        self.output_file = Path(output_file)
        self.workflow = workflow
        self.evaluator = evaluator
        self.class_names = list(class_names) if class_names is not None else None
        self.extra = dict(extra or {})
        self.summary: dict[str, Any] = {}
        self._sums: dict[str, float] = {}
        self._count = 0
        self._session_start = time.perf_counter()
        self._previous_seconds = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._session_start = time.perf_counter()
        previous = {}
        if self.output_file.is_file():
            try:
                previous = json.loads(self.output_file.read_text())
            except ValueError:
                previous = {}
        # a resumed run (the trainer starts past epoch 0) keeps the history of the epochs it already completed
        resumed = engine.state.epoch > 0 and previous.get("workflow") == self.workflow
        self.summary = previous if resumed else {}
        self._previous_seconds = float(self.summary.get("wall_time_s", 0.0)) if resumed else 0.0
        self.summary.update({"workflow": self.workflow, "status": "running", **self.extra})
        self.summary.setdefault("history", [])

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        items = output[0] if isinstance(output, list) and output and isinstance(output[0], Mapping) else output
        if not isinstance(items, Mapping):
            return
        for key, value in items.items():
            scalar = _scalar(value)
            if scalar is not None:
                self._sums[key] = self._sums.get(key, 0.0) + scalar
        self._count += 1

    def _epoch_completed(self, engine: Engine) -> None:
        record: dict[str, Any] = {"epoch": engine.state.epoch}
        record.update({f"mean_{k}": v / max(self._count, 1) for k, v in self._sums.items()})
        self._sums, self._count = {}, 0
        if self.evaluator is not None and self.evaluator.state.metrics:
            record["val"] = {k: _scalar(v) for k, v in self.evaluator.state.metrics.items() if _scalar(v) is not None}
            self.summary["best_metric"] = float(self.evaluator.state.best_metric)
            self.summary["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        if self.evaluator is None and engine.state.metrics:
            record["metrics"] = {k: _scalar(v) for k, v in engine.state.metrics.items() if _scalar(v) is not None}
        history = [h for h in self.summary["history"] if h.get("epoch") != record["epoch"]]
        self.summary["history"] = history + [record]
        self._write(engine, status="running")

    def _completed(self, engine: Engine) -> None:
        final = self.summary["history"][-1] if self.summary.get("history") else {}
        for key, value in final.items():
            if key.startswith("mean_"):
                self.summary[f"final_{key[5:]}"] = value
        if "val" in final:
            self.summary["final_val"] = final["val"]
        if self.evaluator is None and engine.state.metrics:
            self.summary["metrics"] = {k: _scalar(v) for k, v in engine.state.metrics.items() if _scalar(v) is not None}
        source = engine if self.evaluator is None else self.evaluator
        per_class = self._per_class(getattr(source.state, "metric_details", None) or {})
        if per_class:
            self.summary["per_class"] = per_class
        self._write(engine, status="completed")

    def _per_class(self, details: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
        """Mean over cases (NaN cases, e.g. an organ absent from a subject, left out) of each class's metric."""
        if not self.class_names:
            return {}
        result = {}
        for metric, values in details.items():
            values = torch.as_tensor(values, dtype=torch.float64)
            if values.ndim != 2 or values.shape[1] != len(self.class_names):
                continue
            finite = torch.isfinite(values)
            sums = torch.where(finite, values, torch.zeros_like(values)).sum(0)
            counts = finite.sum(0)
            result[metric] = {
                name: (round(float(sums[i] / counts[i]), 4) if counts[i] > 0 else None) for i, name in enumerate(self.class_names)
            }
        return result

    def _write(self, engine: Engine, status: str) -> None:
        self.summary["status"] = status
        self.summary["epochs_completed"] = int(engine.state.epoch)
        self.summary["max_epochs"] = engine.state.max_epochs
        self.summary["wall_time_s"] = round(self._previous_seconds + time.perf_counter() - self._session_start, 2)
        write_json_atomic(self.summary, self.output_file)


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        v = float(value.detach().cpu().item())
        return v if math.isfinite(v) else None
    return None
