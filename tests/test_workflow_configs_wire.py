"""Configs wire, Python computes (issue 34 item 5): every workflow config stays within a budget of ``$`` expressions,
reads no boolean itself, and reaches the package's components through the ``semcl_components`` item; the switches
are checked and read once, by the ``settings`` component.
"""

from __future__ import annotations

import pytest
import yaml

from conftest import CONFIGS
from semcl_components.bundle_runtime.workflow_settings import (
    CascadeSettings,
    InferenceSettings,
    PretrainSettings,
    TrainSettings,
)

#: Every workflow config and overlay the bundle ships (common.yaml holds settings only).
WORKFLOW_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name != "common.yaml")
MAX_EXPRESSIONS = 30


def test_every_workflow_config_is_listed():
    for name in ("pretrain.yaml", "train.yaml", "inference.yaml", "train_refine.yaml", "inference_cascade.yaml",
                 "evaluate_cascade.yaml", "evaluate.yaml", "multi_gpu_train.yaml", "multi_gpu_pretrain.yaml",
                 "multi_gpu_evaluate.yaml", "pretrain_simclr.yaml"):
        assert name in WORKFLOW_CONFIGS


@pytest.mark.parametrize("name", WORKFLOW_CONFIGS)
def test_a_workflow_config_holds_at_most_30_expressions(name):
    """Counted as the issue counts them: the lines holding a ``$`` (an expression, or a comment naming one)."""
    lines = [line for line in (CONFIGS / name).read_text(encoding="utf-8").splitlines() if "$" in line]
    assert len(lines) <= MAX_EXPRESSIONS, f"{name}: {len(lines)} lines with '$':\n" + "\n".join(lines)


@pytest.mark.parametrize("name", WORKFLOW_CONFIGS)
def test_no_config_reads_a_boolean_or_the_command_line(name):
    text = (CONFIGS / name).read_text(encoding="utf-8")
    assert "as_bool" not in text, name
    assert "sys.argv" not in text, f"{name}: bundle_root is the working directory or --bundle_root, not parsed"
    assert "overrides.check_" not in text, f"{name}: the settings component checks the command line"


@pytest.mark.parametrize("name", ["pretrain.yaml", "train.yaml", "inference.yaml"])
def test_the_bundle_root_is_the_working_directory_as_in_the_model_zoo(name):
    assert yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))["bundle_root"] == "."


def _components(node, where=""):
    """``(id, component)`` of every mapping with a ``_target_`` in a parsed config."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node
        for key, value in node.items():
            yield from _components(value, f"{where}#{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _components(value, f"{where}#{index}")


@pytest.mark.parametrize("name", WORKFLOW_CONFIGS)
def test_every_component_of_the_package_requires_the_package_item(name):
    """A component named ``semcl_components.x.Y`` is made only after the ``semcl_components`` item found the package
    (the installed one, else the bundle's ``scripts/`` copy), whichever item a tool asks for first."""
    content = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    found = 0
    for where, component in _components(content):
        target = component["_target_"]
        assert not str(target).startswith("$@semcl_components"), f"{name}{where}: a plain dotted _target_ suffices"
        if str(target).startswith("semcl_components."):
            found += 1
            assert component.get("_requires_") == "@semcl_components", f"{name}{where}: {target} lacks _requires_"
    if name in ("pretrain.yaml", "train.yaml", "inference.yaml"):
        assert found > 10, name


def test_settings_read_booleans_as_written_once():
    settings = TrainSettings(amp="false", tensorboard="No", resume=1, check_command_line=False)
    assert (settings.amp, settings.tensorboard, settings.resume) == (False, False, True)
    assert InferenceSettings(load_pretrain="off", check_command_line=False).load_pretrain is False
    assert CascadeSettings(refine="false", resume="no", check_command_line=False).refine is False
    with pytest.raises(ValueError, match="amp must be true or false, got 'maybe'"):
        TrainSettings(amp="maybe", check_command_line=False)


def test_a_run_without_a_command_line_does_not_resume(monkeypatch):
    """MONAI Label's training (no --config_file) starts afresh; a command line resumes when asked to."""
    monkeypatch.setattr("sys.argv", ["monailabel"])
    assert TrainSettings(resume=True, check_command_line=False).resume_from_checkpoint is False
    monkeypatch.setattr("sys.argv", ["monai.bundle", "run", "--config_file", str(CONFIGS / "train.yaml")])
    assert TrainSettings(resume="true", check_command_line=False).resume_from_checkpoint is True
    assert TrainSettings(resume="false", check_command_line=False).resume_from_checkpoint is False


def test_pretraining_settings_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="mask_mode whole with --positives class"):
        PretrainSettings(mask_mode="whole", positives="class", check_command_line=False)
    with pytest.raises(ValueError, match="--crop_mode must be one of"):
        PretrainSettings(crop_mode="organ", check_command_line=False)
    assert PretrainSettings(mask_mode="whole", positives="instance", check_command_line=False).mask_mode == "whole"


def test_the_settings_check_the_command_line(monkeypatch):
    """An unknown --setting stops the run when the settings are made, naming the closest known key."""
    argv = ["monai.bundle", "run", "--config_file", str(CONFIGS / "train.yaml"), "--max_epoch", "1"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(ValueError, match="did you mean --max_epochs"):
        TrainSettings()
