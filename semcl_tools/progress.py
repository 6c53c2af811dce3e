"""One progress line per running workflow, read from its log: epoch, the key metric, elapsed and estimated time.

A bundle workflow logs every epoch (ignite's ``Epoch[N] Complete`` lines, MONAI's ``StatsHandler`` lines); run by
hand it keeps that logging. When the demo or the benchmark runs it, the whole log goes to the run's log file and the
terminal gets only a :class:`WorkflowProgress`: a bar that updates in place on a terminal (one per running workflow,
from any number of threads), or, when the output is a file or a pipe, one line at each validation, at most one every
``interval_s`` seconds, and one at the end.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from tqdm import tqdm

__all__ = ["EpochStatus", "WorkflowProgress", "emit", "format_seconds"]

_EPOCH = re.compile(r"Epoch: (\d+)/(\d+), Iter: ")
"""MONAI's ``StatsHandler`` iteration line of a trainer: ``Epoch: 3/60, Iter: 1/6 -- train_loss: 3.2``."""
_METRICS = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")
"""MONAI's ``StatsHandler`` epoch line of an evaluator or a trainer's validation: ``Epoch[40] Metrics -- k: v ...``."""
_PATIENCE = re.compile(r"> early_stop_patience: (\d+)")
"""``monai.bundle run``'s input summary line of the early-stopping setting (then the epoch cap is an upper bound)."""
_LOSS = re.compile(r"train_loss: ([-+0-9.eE]+|nan|inf)")
_SHOWN_METRICS = {"val_mean_dice": "val Dice", "embedding_knn_accuracy": "kNN accuracy"}
"""The metrics a progress line shows (the first one present), with their names on the line."""

_slots_lock = threading.Lock()
_slots: set[int] = set()


def emit(text: str, stream: TextIO | None = None) -> None:
    """Print a whole line without breaking the progress bars drawn meanwhile (from any thread)."""
    tqdm.write(text, file=stream or sys.stdout)
    (stream or sys.stdout).flush()


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class EpochStatus:
    """What a workflow's log said so far: its epochs, its last loss and its shown metric's last and best values."""

    epoch: int = 0
    max_epochs: int | None = None
    first_epoch: int | None = None
    loss: float | None = None
    metric: str | None = None
    value: float | None = None
    best: float | None = None
    best_epoch: int | None = None
    validations: int = 0
    early_stopping: bool = False
    started: float = field(default_factory=time.perf_counter)

    def feed(self, line: str) -> bool:
        """Read one log line; whether it was a validation (a new value of the shown metric)."""
        match = _PATIENCE.search(line)
        if match:
            self.early_stopping = int(match.group(1)) > 0
            return False
        match = _EPOCH.search(line)
        if match:
            self.epoch, self.max_epochs = int(match.group(1)), int(match.group(2))
            if self.first_epoch is None:
                self.first_epoch = self.epoch - 1  # a resumed run starts past epoch 0
            loss = _LOSS.search(line)
            if loss:
                self.loss = float(loss.group(1))
            return False
        match = _METRICS.search(line)
        if not match:
            return False
        values = dict(re.findall(r"(\w+): ([-+0-9.eE]+|nan)", match.group(2)))
        name = next((n for n in _SHOWN_METRICS if n in values), None)
        if name is None:
            return False
        self.metric, self.value = name, float(values[name])
        if self.value == self.value and (self.best is None or self.value > self.best):
            self.best, self.best_epoch = self.value, int(match.group(1))
        self.validations += 1
        return True

    def seconds_left(self, now: float | None = None) -> float | None:
        """Time to the epoch cap at the speed so far (an upper bound where early stopping may end the run sooner:
        :attr:`early_stopping`)."""
        done = self.epoch - (self.first_epoch or 0)
        if not self.max_epochs or done <= 0:
            return None
        elapsed = (now or time.perf_counter()) - self.started
        return elapsed / done * (self.max_epochs - self.epoch)

    def describe(self, now: float | None = None) -> str:
        """``epoch 240/1200 | val Dice 0.412 (best 0.430 at 200) | loss 0.91`` (the parts known so far)."""
        parts = [f"epoch {self.epoch}/{self.max_epochs}"] if self.max_epochs else []
        if self.metric is not None:
            shown = _SHOWN_METRICS[self.metric]
            best = f" (best {self.best:.3f} at {self.best_epoch})" if self.best is not None and self.max_epochs else ""
            parts.append(f"{shown} {self.value:.3f}{best}")
        if self.loss is not None and self.metric != "val_mean_dice":
            parts.append(f"loss {self.loss:.3f}")
        return " | ".join(parts) if parts else "starting"


class WorkflowProgress:
    """The progress display of one running workflow, fed its log lines.

    Args:
        name: the workflow run's name, at the start of its line.
        prefix: put before every line printed.
        stream: where to print (default: standard output).
        interactive: a bar that updates in place (default: whether ``stream`` is a terminal).
        interval_s: without a bar, the least time between two lines (a validation, or every ``interval_s`` while
            epochs pass with no validation).
    """

    def __init__(
        self,
        name: str,
        prefix: str = "",
        stream: TextIO | None = None,
        interactive: bool | None = None,
        interval_s: float = 30.0,
    ) -> None:
        self.name, self.prefix = name, prefix
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval_s = interval_s
        self.status = EpochStatus()
        self._printed = self.status.started
        self._bar: tqdm | None = None
        self._slot: int | None = None

    def feed(self, line: str) -> None:
        """Read one log line and update the display."""
        validated = self.status.feed(line)
        now = time.perf_counter()
        if self.interactive:
            self._update_bar()
        elif (validated or self.status.max_epochs) and now - self._printed >= self.interval_s:
            self._printed = now
            emit(self.line(now), self.stream)

    def line(self, now: float | None = None) -> str:
        """``[demo]   NAME: epoch 240/1200 | val Dice 0.412 (best 0.430 at 200) | 1m52s elapsed, at most 7m30s left``."""
        now = now or time.perf_counter()
        timing = f"{format_seconds(now - self.status.started)} elapsed"
        left = self.status.seconds_left(now)
        if left is not None:
            timing += f", {'at most' if self.status.early_stopping else 'about'} {format_seconds(left)} left"
        return f"{self.prefix}   {self.name}: {self.status.describe(now)} | {timing}"

    def close(self) -> None:
        """End the bar (if any); the caller prints the closing line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            with _slots_lock:
                _slots.discard(self._slot)

    def _update_bar(self) -> None:
        status = self.status
        if self._bar is None:
            if not status.max_epochs:
                return
            with _slots_lock:
                self._slot = min(set(range(len(_slots) + 1)) - _slots)
                _slots.add(self._slot)
            self._bar = tqdm(total=status.max_epochs, initial=status.first_epoch or 0, desc=f"{self.prefix} {self.name}",
                             unit="epoch", position=self._slot, leave=False, file=self.stream,
                             ncols=shutil.get_terminal_size().columns)  # 80 where a terminal reports no size
        self._bar.n = status.epoch
        self._bar.set_postfix_str(status.describe().split(" | ", 1)[-1] if status.metric or status.loss else "",
                                  refresh=False)
        self._bar.refresh()
