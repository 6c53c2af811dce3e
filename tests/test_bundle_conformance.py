"""The bundle against MONAI's own bundle tools, all offline: workflow properties, metadata schema, network I/O, export.

``verify_metadata`` normally downloads the schema named in metadata.json; ``monai.apps.utils.download_url`` returns
early when ``--filepath`` already exists (and no hash is asked for), so the model zoo's own schema file
(the ``zoo_schema`` fixture, in the zoo CI folder of ``conftest.find_zoo_ci``) is used and nothing is fetched. The subprocesses also get an
unreachable proxy, so any download attempt would fail.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.networks.nets import SegResNet

from conftest import BUNDLE_DIR, CONFIGS, ZOO_SCHEMA_NAME, bundle_env
from semcl_tools.bundle_configs import COMMAND, PARTS, ConfigPartError, assemble, main, stale_configs, stale_message

META_FILE = CONFIGS / "metadata.json"


def run_offline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` with every proxy pointing at a closed local port."""
    env = bundle_env()
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = "http://127.0.0.1:9"
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        encoding="utf-8", errors="replace",
    )


def metadata() -> dict:
    return json.loads(META_FILE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------------
# workflow properties (what MONAI Label and other MONAI tools rely on)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config, workflow_type", [("train.yaml", "train"), ("inference.yaml", "infer")])
def test_config_defines_every_required_workflow_property(config, workflow_type, phantom_dataset, tmp_path):
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / config),
        meta_file=str(META_FILE),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(BUNDLE_DIR),
        dataset_dir=str(phantom_dataset),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
    )
    workflow.initialize()
    assert workflow.check_properties() == []


# ---------------------------------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------------------------------


def test_metadata_names_the_schema_the_zoo_ci_checks_against():
    assert metadata()["schema"].rsplit("/", 1)[-1] == ZOO_SCHEMA_NAME


def test_metadata_verifies_against_offline_schema(workdir, zoo_schema):
    pytest.importorskip("jsonschema", reason="verify_metadata needs jsonschema (monai[jsonschema])")
    assert metadata()["schema"].rsplit("/", 1)[-1] == zoo_schema.name  # the schema the zoo's CI checks against
    result = run_offline("verify_metadata", "--meta_file", str(META_FILE), "--filepath", str(zoo_schema), cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"File exists: {zoo_schema}, skipped downloading." in output
    assert "metadata is verified with no error." in output


def test_metadata_without_mandatory_key_fails_verification(workdir, tmp_path, zoo_schema):
    pytest.importorskip("jsonschema", reason="verify_metadata needs jsonschema (monai[jsonschema])")
    broken = metadata()
    del broken["network_data_format"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    result = run_offline(
        "verify_metadata", "--meta_file", str(tmp_path / "metadata.json"), "--filepath", str(zoo_schema), cwd=workdir
    )
    assert result.returncode != 0
    assert "'network_data_format' is a required property" in result.stdout + result.stderr


def test_channel_def_names_every_phantom_organ(phantom_dataset):
    dataset_labels = json.loads((phantom_dataset / "dataset.json").read_text(encoding="utf-8"))["labels"]
    outputs = metadata()["network_data_format"]["outputs"]["pred"]
    assert outputs["channel_def"] == dataset_labels
    assert outputs["num_channels"] == len(dataset_labels) == 9
    assert [outputs["channel_def"][str(i)] for i in range(len(dataset_labels))][0] == "background"
    for label, name in dataset_labels.items():
        assert f"{label} {name}" in metadata()["label_classes"]


# ---------------------------------------------------------------------------------------------------------------------
# network input/output and TorchScript export
# ---------------------------------------------------------------------------------------------------------------------


def test_inference_network_matches_metadata_input_and_output(workdir):
    result = run_offline(
        "verify_net_in_out", "network_def", "--meta_file", str(META_FILE),
        "--config_file", str(CONFIGS / "inference.yaml"), "--bundle_root", str(BUNDLE_DIR), "--p", "1", "--n", "1",
        "--any", "1", "--device", "cpu", cwd=workdir,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "data shape of network is verified with no error." in output


def test_ckpt_export_torchscript_matches_checkpoint(trained_model, workdir, tmp_path):
    network_args = {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]}  # as TINY_NETWORK_ARGS
    overrides = [item for key, value in network_args.items() for item in (f"--{key}", json.dumps(value))]
    result = run_offline(
        "ckpt_export", "network_def", "--filepath", str(tmp_path / "model.ts"),
        "--ckpt_file", str(trained_model.ckpt_dir / "model.pt"), "--meta_file", str(META_FILE),
        "--config_file", str(CONFIGS / "inference.yaml"), "--bundle_root", str(BUNDLE_DIR), *overrides, cwd=workdir,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    extra_files = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(tmp_path / "model.ts"), map_location="cpu", _extra_files=extra_files)
    assert json.loads(extra_files["metadata.json"])["network_data_format"] == metadata()["network_data_format"]
    assert json.loads(extra_files["inference.json"])["network_def"]["_target_"] == "SegResNet"

    network = SegResNet(spatial_dims=3, in_channels=1, out_channels=9, **network_args)
    network.load_state_dict(torch.load(trained_model.ckpt_dir / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    torch.manual_seed(0)
    image = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        expected, exported = network(image), scripted(image)
    assert exported.shape == (1, 9, 32, 32, 32)
    torch.testing.assert_close(exported, expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# shared settings: a dataset change is made once, in configs/common.yaml
# ---------------------------------------------------------------------------------------------------------------------

SHARED_WORKFLOWS = ("pretrain.yaml", "train.yaml", "inference.yaml")


def parsed_settings(bundle_root: Path, config: str | list[str], keys: tuple[str, ...], **overrides) -> dict:
    """The parsed values of ``keys`` in a workflow config (or config + overlays) of the bundle at ``bundle_root``.

    Nothing is instantiated.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    configs = [config] if isinstance(config, str) else config
    parser.read_config([str(bundle_root / "configs" / name) for name in configs])
    parser.read_meta(str(bundle_root / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(bundle_root), **overrides})
    return {key: parser.get_parsed_content(key) for key in keys if key in parser}


def test_every_workflow_takes_the_shared_settings_from_common_yaml(tmp_path):
    import shutil

    import yaml

    bundle = tmp_path / "bundle"
    shutil.copytree(CONFIGS, bundle / "configs")
    common = yaml.safe_load((bundle / "configs" / "common.yaml").read_text(encoding="utf-8"))
    common.update(pixdim=[0.8, 0.8, 2.5], hu_min=-100, init_filters=4)  # a new dataset, edited in one place
    (bundle / "configs" / "common.yaml").write_text(yaml.safe_dump(common))

    for config in SHARED_WORKFLOWS:
        values = parsed_settings(bundle, config, tuple(common))
        assert {"pixdim", "hu_min", "hu_max", "init_filters", "blocks_down"} <= set(values), config
        assert values == {key: common[key] for key in values}, config
        # a command-line override still wins for one run
        assert parsed_settings(bundle, config, ("pixdim",), pixdim=[2.0, 2.0, 2.0])["pixdim"] == [2.0, 2.0, 2.0]


def test_workflows_define_no_shared_value_of_their_own():
    """No workflow config holds a literal value for a key of common.yaml (it would silently shadow the shared one)."""
    import yaml

    shared = set(yaml.safe_load((CONFIGS / "common.yaml").read_text(encoding="utf-8")))
    for config in SHARED_WORKFLOWS:
        content = yaml.safe_load((CONFIGS / config).read_text(encoding="utf-8"))
        for key in shared & set(content):
            value = content[key]
            taken = isinstance(value, dict) and value.get("_target_", "").endswith("bundle_files.shared_setting")
            assert taken and value["settings"] == "@common" and value["name"] == key, f"{config} sets {key}: {value!r}"


def test_simclr_overlay_contrasts_view_sized_patches():
    """SimCLR's instance is a view-sized crop (its views are augmented copies, not second crops), whatever the size."""
    values = parsed_settings(CONFIGS.parent, ["pretrain.yaml", "pretrain_simclr.yaml"], ("patch_size", "view_size"))
    assert values["patch_size"] == values["view_size"]
    resized = parsed_settings(CONFIGS.parent, ["pretrain.yaml", "pretrain_simclr.yaml"], ("patch_size",),
                              view_size=[24, 24, 24])
    assert resized["patch_size"] == [24, 24, 24]
    # the method keeps its larger patch, from which each view is a random crop
    method = parsed_settings(CONFIGS.parent, "pretrain.yaml", ("patch_size", "view_size"))
    assert method["patch_size"] != method["view_size"]


def test_view_augmentation_strength_is_set_by_name(phantom_dataset):
    """The shortcut study's settings reach the view transforms: zoom range and intensity scale and shift per view."""
    from monai.transforms import RandAffined, RandScaleIntensityd, RandShiftIntensityd

    def view_transforms(**overrides) -> dict:
        transforms = parsed_settings(CONFIGS.parent, "pretrain.yaml", ("train#view_transforms",),
                                     dataset_dir=str(phantom_dataset), **overrides)["train#view_transforms"]
        return {type(t): t for t in transforms}

    default = view_transforms()
    assert default[RandScaleIntensityd].scaler.factors == pytest.approx((-0.2, 0.2))  # image * (1 + factor)
    assert default[RandShiftIntensityd].shifter.offsets == pytest.approx((-0.15, 0.15))
    strong = view_transforms(view_scale_range=0.4, view_intensity_scale=0.5, view_intensity_shift=0.4)
    assert strong[RandScaleIntensityd].scaler.factors == pytest.approx((-0.5, 0.5))
    assert strong[RandShiftIntensityd].shifter.offsets == pytest.approx((-0.4, 0.4))
    assert strong[RandAffined].rand_affine.rand_affine_grid.scale_range == pytest.approx((0.4, 0.4, 0.4))


def test_train_workflow_attaches_the_encoder_warmup_to_its_optimizer(phantom_dataset):
    from semcl_components.bundle_runtime.handlers import EncoderWarmup

    values = parsed_settings(CONFIGS.parent, "train.yaml", ("train#handlers", "optimizer"),
                             dataset_dir=str(phantom_dataset), encoder_warmup_epochs=3, init_filters=8)
    warmup = next(h for h in values["train#handlers"] if isinstance(h, EncoderWarmup))
    assert warmup.warmup_epochs == 3 and warmup.optimizer is values["optimizer"] and warmup.group_index == 0


def test_a_backbone_registered_in_encoders_is_built_by_name(monkeypatch):
    """'Where to change what': a new backbone is an encoder class and its ENCODERS entry, nothing else."""
    from semcl_components.networks import ENCODERS, ObjectEmbeddingModel, build_encoder

    class TinyEncoder(torch.nn.Module):
        def __init__(self, spatial_dims: int = 3, in_channels: int = 1, width: int = 4) -> None:
            super().__init__()
            self.in_channels, self.out_channels = in_channels, width
            self.conv = torch.nn.Conv3d(in_channels, width, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    monkeypatch.setitem(ENCODERS, "tiny", TinyEncoder)
    for mode, channels in (("pool", 1), ("channel", 2)):
        encoder = build_encoder("tiny", embedding_mode=mode, width=4)
        assert isinstance(encoder, TinyEncoder) and encoder.in_channels == channels
        model = ObjectEmbeddingModel(encoder, embedding_mode=mode, hidden_dim=8, projection_dim=4)
        assert model(torch.rand(1, 1, 8, 8, 8), [torch.ones(2, 8, 8, 8)]).shape == (2, 4)


def test_labels_json_gives_every_workflow_the_classes_of_a_dataset_json(tmp_path):
    """The README's BTCV recipe: ``--labels_json <dataset.json>``; without it, the metadata's channel_def."""
    labels = {"0": "background", "1": "spleen", "2": "right kidney", "3": "left kidney", "4": "gallbladder"}
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "four organs", "labels": labels}))
    channel_def = metadata()["network_data_format"]["outputs"]["pred"]["channel_def"]
    for config in SHARED_WORKFLOWS:
        keys = ("class_names", "num_classes", "lateral_pairs")
        values = parsed_settings(CONFIGS.parent, config, keys, labels_json=str(tmp_path / "dataset.json"))
        assert values["class_names"] == ["spleen", "right kidney", "left kidney", "gallbladder"], config
        assert values["num_classes"] == 5, config
        if "lateral_pairs" in values:
            assert values["lateral_pairs"] == [(2, 3)], config
        default = parsed_settings(CONFIGS.parent, config, ("class_names",))["class_names"]
        assert default == [channel_def[str(i)] for i in range(1, len(channel_def))], config


def test_the_classes_of_labels_json_pass_the_check_against_that_dataset(tmp_path):
    """The dataset.json check compares the dataset with the run's classes: given as its own file, they agree."""
    from semcl_components.bundle_runtime.datalists import load_datalist

    labels = {"0": "background", "1": "liver", "2": "tumour"}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}))
    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "a.nii.gz").write_bytes(b"")
    (tmp_path / "datalist.json").write_text(
        json.dumps({"train": [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}]})
    )
    given = parsed_settings(CONFIGS.parent, "train.yaml", ("class_names",), labels_json=str(tmp_path / "dataset.json"))
    assert len(load_datalist(tmp_path / "datalist.json", "train", tmp_path, class_names=given["class_names"])) == 1
    default = parsed_settings(CONFIGS.parent, "train.yaml", ("class_names",))  # the bundle's 8 organs
    with pytest.raises(ValueError, match=f"run with --labels_json {tmp_path / 'dataset.json'}"):
        load_datalist(tmp_path / "datalist.json", "train", tmp_path, class_names=default["class_names"])


def test_class_names_override_from_a_dataset_json_as_the_btcv_recipe_wrote_it(tmp_path):
    """The expression form of the BTCV recipe before ``labels_json`` still works:
    ``--class_names "$@semcl_components.bundle_runtime.labels.class_names('<dataset.json>')"``."""
    labels = {"0": "background", "1": "spleen", "2": "right kidney", "3": "left kidney", "4": "gallbladder"}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}))
    expression = f"$@semcl_components.bundle_runtime.labels.class_names('{tmp_path / 'dataset.json'}')"
    for config in SHARED_WORKFLOWS:
        values = parsed_settings(CONFIGS.parent, config, ("class_names", "num_classes"), class_names=expression)
        assert values == {"class_names": ["spleen", "right kidney", "left kidney", "gallbladder"], "num_classes": 5}


def test_no_config_imports_the_package_itself():
    """A failed ``$import semcl_components`` would become a stub before the ``semcl_components`` item sets sys.path."""
    for config in [*CONFIGS.glob("*.yaml"), *PARTS.glob("*.yaml")]:
        assert "$import semcl_components" not in config.read_text(encoding="utf-8"), config.name


# ---------------------------------------------------------------------------------------------------------------------
# pretrain.yaml, train.yaml and inference.yaml are generated from config_parts/ (scripts/assemble_configs.py), so what
# they share is written once; MONAI Label and the zoo's CI still load each one alone
# ---------------------------------------------------------------------------------------------------------------------


def test_committed_workflow_configs_are_assembled_from_their_parts():
    stale = stale_configs()
    assert stale == [], stale_message(stale)


def copied_parts_and_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A copy of config_parts/ and configs/ in ``tmp_path``, which ``scripts/assemble_configs.py`` (main) then uses."""
    import shutil

    from semcl_tools import bundle_configs

    parts, configs = tmp_path / "config_parts", tmp_path / "configs"
    shutil.copytree(PARTS, parts)
    shutil.copytree(CONFIGS, configs)
    monkeypatch.setattr(bundle_configs, "PARTS", parts)
    monkeypatch.setattr(bundle_configs, "CONFIGS", configs)
    return parts.resolve(), configs.resolve()


def test_check_names_every_stale_config_and_the_command_then_writing_fixes_them(tmp_path, monkeypatch, capsys):
    import yaml

    parts, configs = copied_parts_and_configs(tmp_path, monkeypatch)
    with (configs / "inference.yaml").open("a") as file:
        file.write("sw_batch_size: 8\n")  # edited by hand
    with (parts / "training.yaml").open("a") as file:
        file.write("new_setting: 1\n")  # a part edited, the configs not regenerated

    assert main(["--check"]) == 1
    message = capsys.readouterr().err
    for name in ("pretrain.yaml", "train.yaml", "inference.yaml"):
        assert str(configs / name) in message, message
    assert COMMAND in message

    assert main([]) == 0
    assert main(["--check"]) == 0
    assert yaml.safe_load((configs / "train.yaml").read_text(encoding="utf-8"))["new_setting"] == 1
    assert yaml.safe_load((configs / "inference.yaml").read_text(encoding="utf-8"))["sw_batch_size"] == 4  # the part's value again


def test_a_key_set_in_two_parts_of_a_workflow_is_refused_naming_both_files(tmp_path, monkeypatch, capsys):
    parts, configs = copied_parts_and_configs(tmp_path, monkeypatch)
    with (parts / "train.yaml").open("a") as file:
        file.write("device: cpu\n")  # base.yaml sets it: in the concatenated file this one would silently win
    with pytest.raises(ConfigPartError) as caught:
        assemble("train.yaml", parts)
    assert "`device`" in str(caught.value)
    assert f"{parts / 'base.yaml'} and {parts / 'train.yaml'}" in str(caught.value)
    assert assemble("inference.yaml", parts)  # a workflow without that part is unaffected

    before = (configs / "inference.yaml").read_text(encoding="utf-8")
    assert main([]) == 2  # and nothing is written, not even the configs the key does not concern
    assert "`device`" in capsys.readouterr().err
    assert (configs / "inference.yaml").read_text(encoding="utf-8") == before


def test_a_key_written_twice_in_one_part_is_refused(tmp_path, monkeypatch):
    parts, _ = copied_parts_and_configs(tmp_path, monkeypatch)
    with (parts / "inference.yaml").open("a") as file:
        file.write("roi_size: [96, 96, 96]\n")  # YAML readers would keep the last one without a word
    with pytest.raises(ConfigPartError, match=re.escape(f"`roi_size` is set twice in {parts / 'inference.yaml'}")):
        assemble("inference.yaml", parts)


@pytest.mark.parametrize("text", ["- a list\n- of items\n", "a string\n", "# only a comment\n"])
def test_a_part_that_is_not_a_mapping_is_refused_naming_the_file(tmp_path, monkeypatch, text):
    parts, _ = copied_parts_and_configs(tmp_path, monkeypatch)
    (parts / "training.yaml").write_text(text)
    with pytest.raises(ConfigPartError, match="a config part must be a mapping") as caught:
        assemble("pretrain.yaml", parts)
    assert str(parts / "training.yaml") in str(caught.value)


def test_a_generated_config_is_its_parts_verbatim_under_a_header(tmp_path):
    """The notice and the workflow's opening comment first, then each part as written, comments included."""
    import yaml

    parts = tmp_path / "config_parts"
    parts.mkdir()
    (parts / "shared.yaml").write_text("# what both share\na: 1  # kept\n")
    (parts / "own.yaml").write_text("# My workflow.\n#   python -m monai.bundle run ...\n\nb: '@a'\n")
    text = assemble("mine.yaml", parts, parts=("shared.yaml", "own.yaml"))
    notice, rest = text.split("#\n# My workflow.\n#   python -m monai.bundle run ...\n\n")
    assert notice.startswith("# GENERATED from the bundle's config_parts/ (shared.yaml, own.yaml")
    assert COMMAND in notice and "edit config_parts/" in notice
    assert rest == "# ==== config_parts/shared.yaml ====\n# what both share\na: 1  # kept\n\n" \
                   "# ==== config_parts/own.yaml ====\nb: '@a'\n"
    assert yaml.safe_load(text) == {"a": 1, "b": "@a"}
