"""``RunSummaryWriter``: a run's key numbers in a JSON file of its output folder, updated every epoch."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from semcl_components.atomic_io import write_json_atomic
from semcl_components.engines import step_output_dict

__all__ = ["RunSummaryWriter"]


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
        items = step_output_dict(engine.state.output)
        if items is None:
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
