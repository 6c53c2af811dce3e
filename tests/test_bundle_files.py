"""``bundle_root``: the working directory, the model zoo's convention, unless ``--bundle_root`` names another folder;
the configs never read the command line. ``command_line_config_files`` stays for ``TrainSettings`` (a command line
resumes, MONAI Label's training does not)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import BUNDLE_DIR, CONFIGS

from semcl_components.bundle_runtime.bundle_files import command_line_config_files, read_bundle_config

GENERATED = ["inference.yaml", "train.yaml", "pretrain.yaml"]


def parsed(config: str, argv: list[str], **overrides: str) -> dict:
    """``bundle_root`` and ``common`` of ``config`` as ``python -m monai.bundle <argv>`` would parse them."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update(overrides)
    saved = sys.argv
    sys.argv = [saved[0], *argv]
    try:
        return {key: parser.get_parsed_content(key) for key in ("bundle_root", "common")}
    finally:
        sys.argv = saved


@pytest.mark.parametrize("config", GENERATED)
def test_the_bundle_root_is_the_working_directory_whatever_the_command_line_names(config, monkeypatch):
    """Run from the bundle folder, a command line naming configs of another folder changes nothing (it used to)."""
    monkeypatch.chdir(BUNDLE_DIR)
    argv = ["run", "--config_file", "/elsewhere/configs/train.yaml"]
    content = parsed(config, argv)
    assert content["bundle_root"] == "."
    assert content["common"] == read_bundle_config(BUNDLE_DIR, "common.yaml")


@pytest.mark.parametrize("config", GENERATED)
def test_bundle_root_names_the_bundle_from_another_folder(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    content = parsed(config, ["run", "--config_file", str(CONFIGS / config)], bundle_root=str(BUNDLE_DIR))
    assert content["bundle_root"] == str(BUNDLE_DIR)
    assert "pixdim" in content["common"]


@pytest.mark.parametrize("config", GENERATED)
def test_from_another_folder_without_bundle_root_the_first_failure_names_the_file_and_the_option(
    config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError) as failure:
        parsed(config, ["run", "--config_file", str(CONFIGS / config)])
    cause = failure.value.__cause__
    assert isinstance(cause, FileNotFoundError)
    assert str(Path("configs") / "common.yaml") in str(cause) and "--bundle_root" in str(cause)
    assert str(tmp_path) in str(cause)


#: command lines naming the bundle's config in every form `monai.bundle run` takes, with their test ids
BUNDLE = "/data/bü ndle v2/abdomen"  # spaces and a non-ASCII character
CONFIG_FILE_FORMS = {
    "path": ["run", "--config_file", f"{BUNDLE}/configs/train.yaml"],
    "equals": ["run", f"--config_file={BUNDLE}/configs/train.yaml"],
    "list": ["run", "--config_file", f"['{BUNDLE}/configs/train.yaml','{BUNDLE}/configs/evaluate.yaml']"],
    "json-list": [
        "run",
        "--config_file",
        f'["{BUNDLE}/configs/train.yaml", "/elsewhere/configs/x.yaml"]',
        "--max_epochs",
        "1",
    ],
    "among-overrides": ["run", "--max_epochs", "1", "--config_file", f"{BUNDLE}/configs/train.yaml", "--amp"],
}


@pytest.mark.parametrize("argv", list(CONFIG_FILE_FORMS.values()), ids=list(CONFIG_FILE_FORMS))
def test_the_command_lines_config_files_are_read_in_every_form(argv):
    assert command_line_config_files(argv)[0] == f"{BUNDLE}/configs/train.yaml"


def test_without_config_file_there_are_none():
    assert command_line_config_files(["run", "--bundle_root", "/x"]) == []
    assert command_line_config_files([]) == []


def test_comma_separated_paths_are_split_as_monai_splits_them():
    files = command_line_config_files(["run", "--config_file", "/b/configs/train.yaml,/b/configs/evaluate.yaml"])
    assert files == ["/b/configs/train.yaml", "/b/configs/evaluate.yaml"]


def test_an_existing_file_with_a_comma_in_its_name_is_one_path(tmp_path):
    config = tmp_path / "a,b" / "configs" / "train.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    assert command_line_config_files(["--config_file", str(config)]) == [str(config)]


def test_the_benchmarks_commands_name_the_bundle_of_their_first_config_unless_given(tmp_path):
    from semcl_tools.bundle_run import bundle_command

    command = bundle_command(tmp_path / "b" / "configs", ["train.yaml", "evaluate.yaml"], {"max_epochs": 1})
    assert command[command.index("--bundle_root") + 1] == str(tmp_path / "b")
    command = bundle_command(tmp_path / "b" / "configs", ["train.yaml"], {"bundle_root": "/x"})
    assert command.count("--bundle_root") == 1 and command[command.index("--bundle_root") + 1] == "/x"
