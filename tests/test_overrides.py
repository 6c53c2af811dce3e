"""Command-line settings: booleans as users write them; unknown or mistyped overrides stop a run by name."""

from __future__ import annotations

import pytest

from semcl_components.bundle_runtime.overrides import as_bool, check_overrides, check_pretraining_settings, parse_cli_overrides

CONFIG = {"max_epochs": 40, "val_interval": 5, "resume": True, "learning_rate": 0.001, "roi_size": [64, 64, 64],
          "train": {"handlers": []}, "pretrained_encoder": "", "labels_json": "", "class_names": "$[]", "_meta_": {}}


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("False", False), ("TRUE", True),
                                             ("yes", True), ("0", False), (1, True), (0, False)])
def test_as_bool_reads_what_users_write(value, expected):
    assert as_bool(value, "resume") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, ""])
def test_as_bool_refuses_anything_else_naming_the_setting(value):
    with pytest.raises(ValueError, match=f"amp must be true or false, got {value!r}"):
        as_bool(value, "amp")


def test_command_line_pairs_are_read_in_both_forms():
    argv = ["run", "--config_file", "a.yaml", "--max_epochs=3", "--resume", "false", "--amp"]
    assert parse_cli_overrides(argv) == {"config_file": "a.yaml", "max_epochs": "3", "resume": "false", "amp": "True"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max_epoch", "1"], "--max_epoch is not a setting of this workflow; did you mean --max_epochs?"),
        (["--max_epochs", "abc"], "--max_epochs must be an integer (default 40), got 'abc'"),
        (["--max_epochs", "2.5"], "--max_epochs must be an integer"),
        (["--resume", "maybe"], "--resume must be true or false, got 'maybe'"),
        (["--learning_rate", "fast"], "--learning_rate must be a number"),
        (["--roi_size", "64"], "--roi_size must be a list like [64, 64, 64], got 64"),
        (["--trian#handlers", "[]"], "--trian#handlers is not a setting of this workflow; did you mean --train?"),
    ],
)
def test_bad_overrides_are_named(argv, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        check_overrides(argv, CONFIG)


def test_the_package_named_as_a_module_in_an_expression_is_refused_naming_both_fixes():
    """The form documented before the bundle carried the components (a NameError in the configs since)."""
    argv = ["--class_names", "$semcl_components.bundle_runtime.labels.class_names('/data/btcv/dataset.json')"]
    with pytest.raises(ValueError) as error:
        check_overrides(argv, CONFIG)
    message = str(error.value)
    assert "--class_names \"$semcl_components.bundle_runtime.labels.class_names('/data/btcv/dataset.json')\"" in message
    assert "write '$@semcl_components.' instead of '$semcl_components.'" in message
    assert "give --labels_json PATH instead" in message


@pytest.mark.parametrize("key", ["output_dir", "ckpt_dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, key):
    """Issue 35: inference reported an ``--output_dir`` that is a file only when it wrote its first result."""
    path = tmp_path / "results.txt"
    path.write_text("")
    with pytest.raises(ValueError, match=f"--{key} {path} is a file, not a folder"):
        check_overrides([f"--{key}", str(path)], {**CONFIG, key: "/x"})
    check_overrides([f"--{key}", str(tmp_path / "new")], {**CONFIG, key: "/x"})  # a missing folder is created


def test_all_problems_are_listed_at_once():
    with pytest.raises(ValueError, match="--max_epoch is not .*; --resume must be"):
        check_overrides(["--max_epoch", "1", "--resume", "x"], CONFIG)


@pytest.mark.parametrize(
    "argv",
    [
        ["--max_epochs", "3", "--resume", "FALSE", "--learning_rate", "1e-4", "--roi_size", "[32,32,32]"],
        ["--train#handlers", "[]", "--pretrained_encoder", "/x/encoder.pt", "--max_epochs", "$2 * 3"],
        ["--config_file", "x.yaml", "--meta_file", "m.json", "--logging_file", "l.conf"],
        ["--learning_rate", "1"],  # an integer is a number
        ["--labels_json", "/data/btcv/dataset.json"],
        ["--class_names", "$@semcl_components.bundle_runtime.labels.class_names('/data/btcv/dataset.json')"],  # a reference
    ],
)
def test_good_overrides_pass(argv):
    check_overrides(argv, CONFIG)


def test_without_config_file_on_the_command_line_nothing_is_checked():
    check_overrides(["--anything", "goes"])  # MONAI Label and Python callers


# ---------------------------------------------------------------------------------------------------------------------
# pretraining settings that are each valid but do not fit together
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_mode", ["exact", "dilate", "blur", "bbox"])
@pytest.mark.parametrize("positives", ["class", "instance"])
def test_organ_masks_go_with_either_positives(mask_mode, positives):
    check_pretraining_settings(mask_mode, positives, "pool")


def test_whole_masks_with_instance_positives_are_simclr():
    check_pretraining_settings("whole", "instance", "pool")


def test_whole_masks_with_class_positives_are_refused_naming_both():
    with pytest.raises(ValueError, match="--mask_mode whole with --positives class"):
        check_pretraining_settings("whole", "class", "pool")


def test_contrast_phase_labels_with_instance_positives_are_refused_naming_both():
    check_pretraining_settings("exact", "class", "pool", contrast_phase_labels="true")
    with pytest.raises(ValueError, match="--contrast_phase_labels true has no effect with --positives instance"):
        check_pretraining_settings("exact", "instance", "pool", contrast_phase_labels="true")


def test_unknown_switch_values_list_the_components_own_values():
    with pytest.raises(ValueError) as error:
        check_pretraining_settings("dilated", "organ", "pooled")
    message = str(error.value)
    assert "--mask_mode must be one of exact, dilate, blur, bbox, whole, got 'dilated'" in message
    assert "--positives must be one of class, instance, got 'organ'" in message
    assert "--embedding_mode must be one of pool, channel, got 'pooled'" in message
