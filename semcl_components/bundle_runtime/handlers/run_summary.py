"""``RunSummaryWriter``: a run's key numbers in a JSON file of its output folder, updated every epoch."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

from ...engines import step_output_dict
from ..atomic_io import write_json_atomic
from ..termination import SigtermAsException, Terminated

__all__ = ["RunSummaryWriter"]


class RunSummaryWriter:
    """Write a run's key numbers to a JSON file in its output folder, updated every epoch and at the end.

    Attached to a trainer, it records per epoch the iteration and the wall time at its end, the mean of every scalar
    entry of the iteration output (``loss``, and for contrastive runs e.g. ``num_objects`` or ``positive_cosine``)
    and, for the epochs after which ``evaluator``
    ran, its metrics (``val``) and their per-class means (``val_per_class``); a validation run when training ends
    (e.g. by ``FinalValidationHandler``) is added to the last epoch's record. It also records the best metric, epochs
    completed, wall time (summed over resumed sessions) and ``status`` (``running``, ``completed``, ``interrupted``
    when the run is stopped by SIGTERM or Ctrl-C, or ``failed`` with the error when the run stops on an exception,
    provided the handlers before it let the event through). While the run goes on, SIGTERM raises an exception
    (:class:`~semcl_components.bundle_runtime.termination.SigtermAsException`), so a terminated run is recorded too.
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
        self._validation: dict[str, Any] | None = None
        self._sigterm = SigtermAsException()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._open)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._failed)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._validation_completed)

    def _validation_completed(self, evaluator: Engine) -> None:
        """Keep the metrics of the validation that just ran for the trainer's current epoch record."""
        self._validation = {"val": _scalars(evaluator.state.metrics)}
        per_class = self._per_class(getattr(evaluator.state, "metric_details", None) or {})
        if per_class:
            self._validation["val_per_class"] = per_class

    def _started(self, engine: Engine) -> None:
        self._session_start = time.perf_counter()
        self.summary = {}
        self._sigterm.install()

    def _open(self, engine: Engine) -> None:
        """Start this session's summary, continuing the file's history if the trainer was resumed.

        Called at the first epoch start (or completion, or failure), after every ``STARTED`` handler has run, so it
        sees the trainer as a resumer restored it, whatever the order the handlers were attached in.
        """
        if self.summary:
            return
        previous = {}
        if self.output_file.is_file():
            try:
                previous = json.loads(self.output_file.read_text())
            except ValueError:
                previous = {}
        # a resumed run (restored past iteration 0) keeps the history of the epochs it already completed
        resumed = engine.state.iteration > 0 and previous.get("workflow") == self.workflow
        self.summary = previous if resumed else {}
        self._previous_seconds = float(self.summary.get("wall_time_s", 0.0)) if resumed else 0.0
        self.summary.update({"workflow": self.workflow, "status": "running", **self.extra})
        self.summary.setdefault("history", [])

    def _iteration_completed(self, engine: Engine) -> None:
        items = step_output_dict(engine.state.output)
        if items is None:
            return
        for key, value in items.items():
            scalar = _scalar(value)
            if scalar is not None:
                self._sums[key] = self._sums.get(key, 0.0) + scalar
        self._count += 1

    def _epoch_completed(self, engine: Engine) -> None:
        # the iteration (optimizer steps so far) and wall time (summed over resumed sessions) at the epoch's end: with
        # the validation that ran after it, the data of a time-to-accuracy curve
        record: dict[str, Any] = {
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
            "wall_time_s": round(self._elapsed(), 2),
        }
        record.update({f"mean_{k}": v / max(self._count, 1) for k, v in self._sums.items()})
        self._sums, self._count = {}, 0
        self._take_validation(record)
        if self.evaluator is None and engine.state.metrics:
            record["metrics"] = _scalars(engine.state.metrics)
        history = [h for h in self.summary["history"] if h.get("epoch") != record["epoch"]]
        self.summary["history"] = history + [record]
        self._write(engine, status="running")

    def _take_validation(self, record: dict[str, Any]) -> None:
        """Move the pending validation result (if one ran since the last record) into ``record``."""
        if self._validation is None:
            return
        record.update(self._validation)
        self._validation = None
        self.summary["best_metric"] = float(self.evaluator.state.best_metric)
        self.summary["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)

    def _completed(self, engine: Engine) -> None:
        self._open(engine)
        history = self.summary.get("history") or [{"epoch": engine.state.epoch}]
        self._take_validation(history[-1])  # a validation run at the end of training belongs to the last epoch
        self.summary["history"] = history
        final = history[-1]
        for key, value in final.items():
            if key.startswith("mean_"):
                self.summary[f"final_{key[5:]}"] = value
        validated = [h for h in history if "val" in h]
        if validated:
            self.summary["final_val"] = validated[-1]["val"]
            if "val_per_class" in validated[-1]:
                self.summary["per_class"] = validated[-1]["val_per_class"]
        if self.evaluator is None:
            if engine.state.metrics:
                self.summary["metrics"] = _scalars(engine.state.metrics)
            per_class = self._per_class(getattr(engine.state, "metric_details", None) or {})
            if per_class:
                self.summary["per_class"] = per_class
        self._sigterm.restore()
        self._write(engine, status="completed")

    def _failed(self, engine: Engine, error: BaseException) -> None:
        self._sigterm.restore()
        self._open(engine)
        self.summary["error"] = f"{type(error).__name__}: {error}"
        self._write(engine, status="interrupted" if isinstance(error, (Terminated, KeyboardInterrupt)) else "failed")
        raise error

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
                name: (round(float(sums[i] / counts[i]), 4) if counts[i] > 0 else None)
                for i, name in enumerate(self.class_names)
            }
        return result

    def _write(self, engine: Engine, status: str) -> None:
        if idist.get_rank() != 0:
            return  # in a distributed run rank 0 writes; validation metrics are gathered over ranks by MONAI
        self.summary["status"] = status
        # the epochs with a record: a run stopped part-way through an epoch has not completed it
        self.summary["epochs_completed"] = max((int(h["epoch"]) for h in self.summary.get("history", [])), default=0)
        self.summary["max_epochs"] = engine.state.max_epochs
        self.summary["wall_time_s"] = round(self._elapsed(), 2)
        write_json_atomic(self.summary, self.output_file)

    def _elapsed(self) -> float:
        """Seconds of this run so far, summed over resumed sessions."""
        return self._previous_seconds + time.perf_counter() - self._session_start


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        v = float(value.detach().cpu().item())
        return v if math.isfinite(v) else None
    return None


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite scalar entries of a metrics mapping."""
    return {k: v for k, v in ((k, _scalar(v)) for k, v in values.items()) if v is not None}
