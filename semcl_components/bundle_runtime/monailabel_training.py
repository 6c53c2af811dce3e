"""MONAI Label's training requests, checked like a command line, and their errors reported where annotators see them.

MONAI Label's ``BundleTrainTask`` (0.8.5) runs ``configs/train.yaml`` in a child process started as
``python -m monailabel.interfaces.utils.app -m train -r '<request as JSON>'`` and hands the bundle only a few config
overrides (``train#trainer#max_epochs``, the training and validation lists it splits by ``val_split``, ``device``,
``train#handlers``). The rest of the request never reaches the config: a typo such as ``max_epoch`` is ignored,
``max_epochs: -1`` or ``"abc"`` fails inside ignite without naming the option, and a ``val_split`` that leaves no
training case ends the task DONE with nothing trained. MONAI Label then shows only the last 20 lines of that process's
output as the task's ``details``, where MONAI's config wrappers push the bundle's own message out.

- :func:`training_request`: the request of the running process, if it is MONAI Label's training process.
- :func:`check_training_request`: every option a known one, of the right kind (``overrides.check_overrides`` calls it
  in that process, as it checks a command line elsewhere).
- :func:`check_training_cases`: at least one training case; without validation cases the run still writes
  ``models/model.pt`` (the final-model saver in ``train.yaml``'s ``train#handlers``) and says so.
- :func:`report_errors_last`: the innermost error's message as the last line of the output, so that the task's
  status names the problem.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "TRAINING_OPTIONS",
    "check_training_cases",
    "check_training_request",
    "report_errors_last",
    "training_request",
]

#: The keys of a MONAI Label 0.8.5 training request for a bundle: any other key is ignored by MONAI Label.
TRAINING_OPTIONS = (
    # what BundleTrainTask.config() offers (3D Slicer sends all of them) and BundleTrainTask.__call__ reads
    "device",
    "pretrained",
    "max_epochs",
    "val_split",
    "multi_gpu",
    "gpus",
    "tracking",
    "tracking_uri",
    "tracking_experiment_name",
    "tracking_run_name",
    "run_id",
    "model_filename",
    "force_multi_gpu",
    # what MONAI Label and its clients add to every request
    "model",
    "bundle_path",
    "local_rank",
    "client_id",
)

_APP_MODULE = os.path.join("monailabel", "interfaces", "utils", "app.py")
_logger = logging.getLogger(__name__)


def training_request(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The request of MONAI Label's training process (``argv``: ``sys.argv`` by default), else None.

    That process is ``python -m monailabel.interfaces.utils.app -m train -r '<JSON>'``: its ``argv[0]`` is the path
    of that module and the request is the JSON after ``-r`` (or ``--request``).
    """
    args = list(sys.argv if argv is None else argv)
    if not args or not os.path.normpath(args[0]).endswith(_APP_MODULE):
        return None
    values = {}
    for flag, value in zip(args[1:], args[2:]):
        if flag in ("-m", "--method", "-r", "--request"):
            values[flag.lstrip("-")[0]] = value
    if values.get("m") != "train":
        return None
    request = json.loads(values.get("r", "{}"))
    return request if isinstance(request, dict) else None


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _option_problems(request: Mapping[str, Any]) -> list[str]:
    """One message per unknown option or option value that MONAI Label would misread."""
    problems = []
    for key in request:
        if key not in TRAINING_OPTIONS:
            close = difflib.get_close_matches(key, TRAINING_OPTIONS, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "MONAI Label passes only max_epochs, val_split, pretrained, model_filename and device to the "
                "bundle; set the bundle's other settings in configs/train.yaml of the served bundle"
            )
            problems.append(f"'{key}' is not a training option ({hint})")
    if "max_epochs" in request:
        value = request["max_epochs"]
        if not (_is_integer(value) and value >= 1):
            problems.append(f"max_epochs must be a whole number of at least 1, got {value!r}")
    if "val_split" in request:
        value = request["val_split"]
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
            problems.append(
                f"val_split must be a number from 0 to below 1 (the share of the labelled studies kept for "
                f"validation), got {value!r}"
                + (
                    " (-1 would validate on the bundle's own phantom validation list, not on your studies)"
                    if value == -1
                    else ""
                )
            )
    for key in ("pretrained", "multi_gpu"):
        if key in request and not isinstance(request[key], bool):
            problems.append(
                f"{key} must be true or false (a JSON boolean: MONAI Label reads any string as true), "
                f"got {request[key]!r}"
            )
    return problems


def check_training_request(request: Mapping[str, Any]) -> None:
    """Stop a MONAI Label training request with an unknown option or a value MONAI Label would misread.

    Also calls :func:`report_errors_last`, so that this message (and any later error of the run) ends the output
    that MONAI Label shows as the task's status.

    Raises:
        ValueError: listing every problem, each naming the option (and the closest known one for a typo).
    """
    report_errors_last()
    problems = _option_problems(request)
    if problems:
        raise ValueError("invalid MONAI Label training options: " + "; ".join(problems) + ".")


def check_training_cases(train_data: Sequence, val_data: Sequence) -> None:
    """Stop a run with no training case; say that a run with no validation case trains without validation.

    MONAI Label splits the labelled studies by ``val_split``: no label yet, or a split that keeps every study for
    validation, leaves nothing to train on (MONAI's trainer would skip the run and report success); one labelled
    study with the default ``val_split`` 0.2 leaves no validation case, and the run then writes the model of its last
    epoch as ``models/model.pt`` (the final-model saver in ``train#handlers``) instead of the best validated one.

    Raises:
        ValueError: no training case.
    """
    if len(train_data) == 0:
        raise ValueError(
            f"no training cases: the training list is empty ({len(val_data)} validation cases). In MONAI Label, submit "
            "labels first (Submit Label saves them in <studies>/labels/final) and keep val_split below 1 - "
            "1/<number of labelled studies>."
        )
    if len(val_data) == 0:
        _logger.warning(
            f"no validation cases ({len(train_data)} training cases): training without validation; models/model.pt "
            "will be the model after the last epoch (give more labelled studies or a larger val_split to validate)."
        )


def _innermost(error: BaseException) -> BaseException:
    seen = {id(error)}
    while True:
        nxt = error.__cause__ or error.__context__
        if nxt is None or id(nxt) in seen:
            return error
        seen.add(id(nxt))
        error = nxt


def report_errors_last(drain_seconds: float = 2.0) -> None:
    """Make an uncaught error end the process's output with its innermost cause's message (once per process).

    MONAI wraps an error of a config item in ``RuntimeError("Failed to evaluate ...")`` or ``"Failed to instantiate
    ..."`` with the item's configuration, so the traceback's last lines, the only ones MONAI Label keeps, do not hold
    the message that names the file or setting. After the usual traceback, this prints ``<Type>: <message>`` of the
    error at the bottom of the chain, then waits ``drain_seconds`` before the process ends: MONAI Label stops
    reading the output as soon as the process has ended, so lines still in the pipe would never reach the status.
    """
    previous = sys.excepthook
    if getattr(previous, "_reports_errors_last", False):
        return

    def hook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        sys.stdout.flush()
        previous(kind, error, traceback)
        cause = _innermost(error)
        if cause is not error:
            print(f"{type(cause).__name__}: {cause}", file=sys.stderr, flush=True)
        time.sleep(drain_seconds)

    hook._reports_errors_last = True  # type: ignore[attr-defined]
    sys.excepthook = hook
