"""The benchmark on the user's own labelled dataset (``--dataset_dir``): another class set, another spacing."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from semcl_benchmark.cli import _parser, main
from semcl_benchmark.protocol import load_protocol

CLASSES = {"0": "background", "1": "core", "2": "shell", "3": "vessel"}
SPACING = (2.0, 2.0, 3.0)

TINY = """
sizes:
  tiny:
    base: quick
    splits: {test: 3, validation: 2, training_pool: 3, pretraining_pool: 1}
    arms: [scratch, atlas_body_box]
    settings: [finetune_1]
    setting_arms: {}
    seeds: [0]
    probe_arms: []
    study_arms: []
"""


def write_dataset(folder: Path, num: int = 10) -> None:
    """``num`` cases of 24 x 24 x 16 voxels at 2 x 2 x 3 mm: a body with a core inside a shell, and a vessel."""
    rng = np.random.default_rng(0)
    affine = np.diag([*SPACING, 1.0])
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    training = []
    for i in range(num):
        centre = np.array([12, 12, 8]) + rng.integers(-2, 3, 3)
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in (24, 24, 16)], indexing="ij"), -1)
        distance = np.linalg.norm((grid - centre) * np.array(SPACING), axis=-1)
        label = np.zeros((24, 24, 16), dtype=np.uint8)
        label[distance < 14] = 2
        label[distance < 7] = 1
        label[2:5, 2:5, :] = 3
        image = np.where(distance < 20, 40.0, -1000.0) + 120.0 * label + rng.normal(0, 10, label.shape)
        name = f"case_{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine), folder / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, affine), folder / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    dataset = {"name": "Synthetic", "labels": CLASSES, "numTraining": num, "training": training}
    (folder / "dataset.json").write_text(json.dumps(dataset))


@pytest.mark.slow
def test_the_benchmark_runs_on_a_users_dataset_with_its_classes_and_spacing(tmp_path):
    data, protocol = tmp_path / "mydata", tmp_path / "tiny.yaml"
    write_dataset(data)
    protocol.write_text(TINY)
    results = tmp_path / "results"
    arguments = ["--protocol", str(protocol), "--size", "tiny", "--dataset_dir", str(data), "--results", str(results),
                 "--workdir", str(tmp_path / "work"), "--allow-dirty", "--device", "cpu"]
    assert main(arguments) == 0
    run = json.loads((results / "finetune__scratch__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert run["test"]["classes"] == ["core", "shell", "vessel"] and len(run["test"]["cases"]) == 3
    assert run["config"]["data"]["pixdim"] == list(SPACING) and run["config"]["data"]["dataset_dir"] == str(data)
    assert run["allow_dirty"] is True and run["encoder"] is None  # random initialisation loads no encoder
    points = run["validation_points"]  # one labelled volume, batch 2: one step per epoch; 2 epochs, 4 if extended
    assert [p["step"] for p in points] == [p["epoch"] for p in points] == list(range(1, run["epochs"] + 1))
    assert run["epochs"] == run["budget"]["max_epochs"][-1] and points[-1]["seconds"] > points[0]["seconds"] > 0
    fractions = run["budget_fractions"]  # scratch's own budget: its best epoch
    assert fractions["scratch_best_epoch"] == run["best_metric_epoch"]
    assert [p["fraction"] for p in fractions["points"]] == [0.25, 0.5, 1.0]
    # the snapshot of its best epoch is its model.pt: the same Dice as the bundle's evaluation
    assert np.allclose(fractions["points"][-1]["test"]["dice"], run["test"]["dice"], atol=1e-5)
    assert run["labelled_cases"][0]["case"].startswith("case_") and "contrast_phase" not in run["labelled_cases"][0]
    assert run["test"]["contrast_phases"] is None  # the dataset records no phases: nothing to stratify or tabulate
    atlas = json.loads((results / "atlas__atlas_body_box__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert atlas["test"]["cases"] == run["test"]["cases"] and atlas["labelled_cases"] == run["labelled_cases"]
    assert min(d for row in atlas["test"]["dice"] for d in row[:2]) > 0.5  # core and shell line up after registration
    datalist = json.loads((tmp_path / "work" / "datalists" / "datalist_seed0.json").read_text(encoding="utf-8"))
    assert not list(data.glob("datalist*.json"))  # nothing is written into the user's folder
    assert {len(datalist[k]) for k in ("test", "finetune_1", "pretrain")} == {3, 1}
    report = (results / "RESULTS.md").read_text(encoding="utf-8")
    assert f"--dataset_dir {data}" in report


def test_a_users_results_and_work_go_to_a_folder_of_their_own(tmp_path):
    from semcl_benchmark.cli import _folders

    size = load_protocol().sizes["default"]
    args = _parser().parse_args(["--dataset_dir", str(tmp_path / "btcv")])
    results, work, report = _folders(args, size)
    name = results.parts[-3]  # the folder's name and a hash of its path (issue 35, item 5: /a/ok and /b/ok differ)
    assert results.parts[-4] == "benchmark" and results.parts[-2:] == ("default", "results") and work == results.parent
    assert name.startswith("btcv-") and len(name) == len("btcv-") + 8
    assert report == results / "RESULTS.md"  # never the committed docs/RESULTS.md


def test_a_folder_without_dataset_json_is_refused_naming_the_layout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--dataset_dir", str(tmp_path), "--report-only"])
    assert "no dataset.json; the benchmark reads an MSD-style dataset folder" in capsys.readouterr().err
