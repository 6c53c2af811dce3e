"""The refine model's folder and config (``semcl_tools.monailabel_refine``), read as MONAI Label's ``BundleInferTask``
reads them, without a server: the REST tests (``test_monailabel.py -k refine``) need MONAI Label's environment and a
trained export; these catch a change of the cascade's configs that the refine model does not follow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from conftest import BUNDLE_DIR

from semcl_tools.monailabel_refine import LABEL_AS_PRIOR, refine_model_name, write_refine_model


@pytest.fixture
def refine_model(tmp_path) -> Path:
    """The refine model written beside a served bundle copy (configs only, an empty ``models/``) in an app's
    ``model/`` folder."""
    copy = tmp_path / "model" / BUNDLE_DIR.name
    shutil.copytree(BUNDLE_DIR / "configs", copy / "configs")
    (copy / "models").mkdir()
    return write_refine_model(copy)


def served_config(folder: Path) -> ConfigParser:
    """The config of a served model as MONAI Label's ``BundleInferTask`` loads it: ``configs/inference.json`` first,
    ``bundle_root`` set to the model's folder."""
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(folder)})
    return parser


def test_refine_model_folder_holds_the_cascade_and_shares_the_bundle_models(refine_model):
    assert refine_model.name == refine_model_name(BUNDLE_DIR.name) == f"{BUNDLE_DIR.name}_refine"
    configs = {path.name for path in (refine_model / "configs").iterdir()}
    assert {"inference.json", "common.yaml", "metadata.json"} <= configs
    assert not configs & {"train.yaml", "inference.yaml"}  # no second trainer; inference.json is the config
    assert (refine_model / "models").resolve() == (refine_model.parent / BUNDLE_DIR.name / "models").resolve()
    config = json.loads((refine_model / "configs" / "inference.json").read_text(encoding="utf-8"))
    assert config["preprocessing"]["transforms"][0] == LABEL_AS_PRIOR
    assert config["network_def"]["out_channels"] == "@num_classes"  # stage 1, which MONAI Label loads model.pt into
    again = write_refine_model(refine_model.parent / BUNDLE_DIR.name)  # a restart rewrites it
    assert again == refine_model and (again / "configs" / "inference.json").is_file()


def test_refine_config_reads_the_uploaded_label_as_the_prior(refine_model, phantom_dataset):
    preprocessing = served_config(refine_model).get_parsed_content("preprocessing", instantiate=True)
    image = str(phantom_dataset / "imagesTr" / "phantom_000.nii.gz")
    label = str(phantom_dataset / "labelsTr" / "phantom_000.nii.gz")
    request = {"image": image, "image_path": image}  # what MONAI Label hands the task
    with_label = preprocessing({**request, "label": label})["image"]
    assert with_label.shape[0] == 2  # [image, prior]
    organs = np.unique(np.asarray(nib.load(label).dataobj)).tolist()
    assert torch.unique(with_label[1]).tolist() == organs  # the label's organ ids, on the image's grid
    assert preprocessing(dict(request))["image"].shape[0] == 1  # no label: the image alone, stage 1 makes the prior


def test_refine_config_builds_stage_2_with_its_weights(refine_model):
    """MONAI Label runs no handler, so the refine model loads ``models/refine/model.pt`` when its inferer is built."""
    parser = served_config(refine_model)
    weights = parser.get_parsed_content("refine_network_def", instantiate=True).state_dict()
    weights = {key: torch.full_like(value, 0.5) if value.is_floating_point() else value for key, value in
               weights.items()}  # fmt: skip
    (refine_model / "models" / "refine").mkdir()
    torch.save(weights, refine_model / "models" / "refine" / "model.pt")
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    for key, value in inferer.refine_network.state_dict().items():
        torch.testing.assert_close(value.cpu(), weights[key], msg=key)
