"""MONAI Label's training requests: read from its training process's command line, checked, errors reported last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from semcl_components.bundle_runtime.monailabel_training import (
    check_training_cases,
    check_training_request,
    report_errors_last,
    training_request,
)
from semcl_components.bundle_runtime.overrides import check_overrides

APP = os.path.join("/venv", "lib", "site-packages", "monailabel", "interfaces", "utils", "app.py")
SLICER_REQUEST = {  # what 3D Slicer's MONAI Label module sends: the trainer's config options and its client id
    "model": "abdomen_ct_semcl_segmentation", "device": "cpu", "pretrained": True, "max_epochs": 50, "val_split": 0.2,
    "multi_gpu": True, "gpus": "all", "tracking": "None", "tracking_uri": "", "tracking_experiment_name": "",
    "run_id": "", "model_filename": "model.pt", "client_id": "user-xyz", "bundle_path": "/apps/model/x",
}  # fmt: skip


def argv(request: dict, method: str = "train") -> list[str]:
    return [APP, "-m", method, "-r", json.dumps(request, separators=(",", ":"))]


def test_the_request_is_read_from_monai_labels_training_process():
    assert training_request(argv({"max_epochs": 2})) == {"max_epochs": 2}


@pytest.mark.parametrize(
    "command",
    [argv({"max_epochs": 2}, method="infer"), ["-m", "monai.bundle", "run", "-r", "{}"], ["python"], []],
)
def test_other_processes_have_no_request(command):
    assert training_request(command) is None


def test_what_slicer_sends_passes():
    check_training_request(SLICER_REQUEST)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_epoch": 1}, "'max_epoch' is not a training option (did you mean 'max_epochs'?)"),
        ({"learning_rate": 0.1}, "'learning_rate' is not a training option (MONAI Label passes only"),
        ({"max_epochs": -1}, "max_epochs must be a whole number of at least 1, got -1"),
        ({"max_epochs": "abc"}, "max_epochs must be a whole number of at least 1, got 'abc'"),
        ({"max_epochs": 2.5}, "max_epochs must be a whole number"),
        ({"max_epochs": True}, "max_epochs must be a whole number"),
        ({"val_split": 1.0}, "val_split must be a number from 0 to below 1"),
        ({"val_split": "abc"}, "val_split must be a number from 0 to below 1"),
        ({"val_split": -1}, "-1 would validate on the bundle's own phantom validation list"),
        ({"pretrained": "false"}, "pretrained must be true or false (a JSON boolean"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match="invalid MONAI Label training options: .*" + _escaped(message)):
        check_training_request({**SLICER_REQUEST, **options})


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValueError, match="'max_epoch' is not .*; val_split must be"):
        check_training_request({"max_epoch": 1, "val_split": 2})


def test_check_overrides_checks_the_request_in_monai_labels_training_process(monkeypatch):
    monkeypatch.setattr(sys, "argv", argv({"max_epoch": 1}))
    with pytest.raises(ValueError, match="did you mean 'max_epochs'"):
        check_overrides()


def test_check_overrides_leaves_other_python_callers_alone(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["worker.py", "--max_epoch", "1"])
    check_overrides()


def test_no_training_case_stops_naming_the_fix():
    with pytest.raises(ValueError, match="no training cases: .*submit labels first"):
        check_training_cases([], [{"image": "a", "label": "b"}])


def test_no_validation_case_is_said_and_training_goes_on(caplog):
    with caplog.at_level("WARNING"):
        check_training_cases([{"image": "a", "label": "b"}], [])
    assert "no validation cases (1 training cases): training without validation" in caplog.text


def test_the_innermost_error_ends_the_output():
    """A wrapped error (as MONAI's config wrappers raise) ends the output with its cause's message."""
    code = textwrap.dedent(
        """
        from semcl_components.bundle_runtime.monailabel_training import report_errors_last
        report_errors_last(drain_seconds=0)
        report_errors_last(drain_seconds=0)  # once per process
        try:
            raise ValueError("phantom_004.nii.gz: the label map holds background only")
        except ValueError as error:
            raise RuntimeError("Failed to instantiate component\\n" + "config line\\n" * 40) from error
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "ValueError: phantom_004.nii.gz: the label map holds background only"
    assert lines.count(lines[-1]) == 2  # the traceback's own line, once, and the repeat at the end


def test_report_errors_last_keeps_the_previous_hook(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: calls.append(args))
    report_errors_last(drain_seconds=0)
    error = ValueError("plain")
    sys.excepthook(ValueError, error, None)
    assert calls == [(ValueError, error, None)]
