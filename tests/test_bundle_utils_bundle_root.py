"""``bundle_root``: the bundle folder from the ``--config_file`` of a ``python -m monai.bundle`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from semcl_components.bundle_runtime.bundle_files import bundle_root, command_line_config_files

BUNDLE = "/data/bü ndle v2/abdomen"  # spaces and a non-ASCII character


#: command lines naming the bundle's config in every form `monai.bundle run` takes, with their test ids
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
def test_bundle_root_is_the_parent_of_the_first_configs_folder(argv):
    assert bundle_root(argv) == BUNDLE


def test_relative_config_path_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bundle_root(["run", "--config_file", "bündle/configs/inference.yaml"]) == str(tmp_path / "bündle")


def test_without_config_file_the_working_directory_is_the_bundle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bundle_root(["run", "--bundle_root", "/x"]) == os.path.abspath(".")
    assert bundle_root([]) == os.path.abspath(".")


def test_comma_separated_paths_are_split_as_monai_splits_them():
    files = command_line_config_files(["run", "--config_file", "/b/configs/train.yaml,/b/configs/evaluate.yaml"])
    assert files == ["/b/configs/train.yaml", "/b/configs/evaluate.yaml"]


def test_an_existing_file_with_a_comma_in_its_name_is_one_path(tmp_path):
    config = tmp_path / "a,b" / "configs" / "train.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    assert command_line_config_files(["--config_file", str(config)]) == [str(config)]
    assert bundle_root(["--config_file", str(config)]) == str(tmp_path / "a,b")


# the configs' ``bundle_root`` item is written without the package (the package is found through it: issue 35 item 1),
# so it repeats bundle_root() in a config expression; both must read every command line alike

CONFIG_FILES = Path(__file__).resolve().parents[1] / "bundles" / "abdomen_ct_semcl_segmentation" / "configs"


def config_bundle_root(argv: list[str], config: str = "inference.yaml") -> str:
    """The configs' ``bundle_root`` item, evaluated as in ``python -m monai.bundle <argv>``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIG_FILES / config))
    saved = sys.argv
    sys.argv = [saved[0], *argv]
    try:
        return parser.get_parsed_content("bundle_root")
    finally:
        sys.argv = saved


@pytest.mark.parametrize(
    "argv",
    [
        *CONFIG_FILE_FORMS.values(),
        ["run", "--config_file", "/b/configs/train.yaml,/b/configs/evaluate.yaml"],
        ["run", "--config_file", "bündle/configs/inference.yaml", "--input_path", "/data/ds/imagesTs/x.nii.gz"],
        ["run", "--bundle_root", "/x"],
        [],
    ],
    ids=[*CONFIG_FILE_FORMS, "comma-separated", "relative", "no-config", "none"],
)
@pytest.mark.parametrize("config", ["inference.yaml", "train.yaml", "pretrain.yaml"])
def test_the_configs_bundle_root_item_reads_the_command_line_as_bundle_root_does(argv, config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_bundle_root(argv, config) == bundle_root(argv)


def test_the_configs_bundle_root_item_takes_an_existing_file_with_a_comma_whole(tmp_path):
    config = tmp_path / "a,b" / "configs" / "train.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    assert config_bundle_root(["run", "--config_file", str(config)]) == str(tmp_path / "a,b")
