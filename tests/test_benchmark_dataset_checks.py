"""The benchmark on a user's dataset (``--dataset_dir``): the dataset (its folder and its content) is part of every
run's identity, and a faulty dataset or option stops the benchmark before any work, naming the file or option and the
problem (issue 35, items 5, 6, 7 and 11 and the benchmark's poor messages).

Each test goes through the benchmark's command on a tiny dataset (``test_benchmark_user_data.write_dataset``); where it
runs anything, it runs only an atlas arm, which trains nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_benchmark_atlas_inputs import ATLAS, benchmark_arguments
from test_benchmark_user_data import write_dataset

from semcl_benchmark import cli
from semcl_benchmark.cli import main


def _refusal(capsys, arguments: list[str]) -> str:
    """The error of a command that must stop before any work (argparse's exit status 2)."""
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    return " ".join(capsys.readouterr().err.split())  # argparse wraps long messages


def _edit_dataset_json(folder: Path, change) -> None:
    dataset = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    change(dataset)
    (folder / "dataset.json").write_text(json.dumps(dataset))


# ----------------------------------------------------------------------------------------- item 5: one folder each


def test_two_datasets_of_one_folder_name_get_results_folders_of_their_own(tmp_path, monkeypatch, capsys):
    """Item 5: ``/a/ok`` and ``/b/ok`` shared ``runs/benchmark/ok/``: the second replaced the first's result files."""
    monkeypatch.setattr(cli, "ROOT", tmp_path / "repository")
    reports = []
    for parent in ("a", "b"):
        write_dataset(tmp_path / parent / "ok", num=9)
        assert main(benchmark_arguments(tmp_path, tmp_path / parent / "ok", "--report-only")) == 0
        reports.append(capsys.readouterr().out.split("[bench] report: ")[1].strip())
    assert reports[0] != reports[1] and all(Path(report).is_file() for report in reports)
    assert [Path(report).parts[-4].split("-")[0] for report in reports] == ["ok", "ok"]


def test_a_results_folder_holding_another_datasets_runs_is_refused_naming_both(tmp_path, capsys):
    """Item 5, for a ``--results`` given twice: nothing runs into a folder of another dataset's result files."""
    first, second, results = tmp_path / "a" / "ok", tmp_path / "b" / "ok", tmp_path / "shared" / "results"
    write_dataset(first, num=9)
    write_dataset(second, num=9)
    results.mkdir(parents=True)
    (results / f"atlas__{ATLAS}__finetune_1__seed0.json").write_text(
        json.dumps({"config": {"stage": "atlas", "data": {"dataset_dir": str(first)}}, "config_hash": "x"})
    )
    assert main(benchmark_arguments(tmp_path, second, "--arms", ATLAS, "--allow-dirty", results=results)) == 2
    error = capsys.readouterr().err
    assert f"--results {results} holds result files of the dataset {first}" in error
    assert f"this benchmark runs on the dataset {second}" in error and "Give another --results" in error
    assert not (results.parent / "work" / "datalists").exists()  # nothing was run


# ---------------------------------------------------------------------------------- item 6: the dataset's content


def test_runs_of_an_edited_dataset_count_as_not_done_naming_what_changed(tmp_path, capsys):
    """Item 6: seeds run before an edit were pooled with those after it; now a run records the dataset's fingerprint
    (in its configuration: a run of another version counts as not done) and what it held, to name the change."""
    data, results = tmp_path / "mydata", tmp_path / "out" / "results"
    write_dataset(data, num=9)
    arguments = benchmark_arguments(tmp_path, data, "--arms", ATLAS, "--allow-dirty", results=results)
    assert main(arguments) == 0
    result_file = results / f"atlas__{ATLAS}__finetune_1__seed0.json"
    first = json.loads(result_file.read_text(encoding="utf-8"))
    recorded = first["dataset"]
    assert recorded["dataset_dir"] == str(data) and first["config"]["data"]["fingerprint"] == recorded["fingerprint"]
    assert recorded["files"]["labelsTr/case_03.nii.gz"]["bytes"] > 0 and len(recorded["files"]) == 18
    capsys.readouterr()

    label = nib.load(data / "labelsTr" / "case_03.nii.gz")  # a corrected label map
    array = np.asarray(label.dataobj).copy()
    array[12, 12, 8] = 2 if array[12, 12, 8] == 1 else 1
    nib.save(nib.Nifti1Image(array, label.affine), data / "labelsTr" / "case_03.nii.gz")
    assert main([*arguments, "--report-only"]) == 0
    error = " ".join(capsys.readouterr().err.split())
    assert f"1 result file(s) in {results} were made from another version of the dataset {data}" in error
    assert "1 file changed: labelsTr/case_03.nii.gz" in error and "They count as not done" in error
    assert "Runs finished: 0 of 1 planned" in (results / "RESULTS.md").read_text(encoding="utf-8")  # not pooled with the new data

    assert main(arguments) == 0  # run again, its file replaced
    second = json.loads(result_file.read_text(encoding="utf-8"))
    assert second["dataset"]["fingerprint"] != recorded["fingerprint"]
    assert second["config_hash"] != first["config_hash"]
    capsys.readouterr()
    assert main([*arguments, "--report-only"]) == 0
    assert "another version" not in capsys.readouterr().err
    assert "Runs finished: 1 of 1 planned" in (results / "RESULTS.md").read_text(encoding="utf-8")


# -------------------------------------------------------------------------- items 7, 11 and faulty datasets or options


@pytest.mark.parametrize(
    "change, expected",
    [
        (  # item 7: one case twice, so it could land in the test set and in the training pool
            lambda d: d["training"].append({"image": "imagesTr/case_02.nii.gz", "label": "labelsTr/case_02.nii.gz"}),
            "dataset.json, list 'training': entries 2 and 9 name the same image file (./imagesTr/case_02.nii.gz and "
            "imagesTr/case_02.nii.gz)",
        ),
        (  # item 11: two classes of one name (a per-class summary keeps one)
            lambda d: d["labels"].update({"3": "Core"}),
            "dataset.json: classes 1 ('core') and 3 ('Core') have the same name",
        ),
        (  # a labels key that is no id: was a bare int() error
            lambda d: d["labels"].update({"three": "vessel"}),
            "dataset.json: label id 'three' is not a whole number",
        ),
        (  # the atlas's KeyError 'label'
            lambda d: d["training"][4].pop("label"),
            "dataset.json: training entry 4 ({'image': './imagesTr/case_04.nii.gz'}) has no label",
        ),
        (
            lambda d: d["training"][1].update(label="./labelsTr/missing.nii.gz"),
            "dataset.json: the label file ./labelsTr/missing.nii.gz of training entry 1",
        ),
        (  # 'pretraining_pool must be 1..0'
            lambda d: d["training"].pop(),
            "has 8 cases, but size 'tiny''s splits need test 3 + validation 2 + training_pool 3 + pretraining_pool 1 "
            "= 9",
        ),
    ],
    ids=["case-listed-twice", "class-name-twice", "id-not-a-number", "entry-without-label", "missing-file", "too-few"],
)
def test_a_faulty_dataset_is_refused_before_any_work_naming_the_file(tmp_path, capsys, change, expected):
    data = tmp_path / "mydata"
    write_dataset(data, num=9)
    _edit_dataset_json(data, change)
    assert expected in _refusal(capsys, benchmark_arguments(tmp_path, data, "--report-only"))


@pytest.mark.parametrize(
    "option, expected",
    [
        (["--jobs", "0"], "argument --jobs: 0 is below 1"),
        (["--threads-per-job", "-2"], "argument --threads-per-job: -2 is below 1"),
        (["--seeds", "0", "-1"], "argument --seeds: -1 is below 0"),
        (["--max-runs", "-1"], "argument --max-runs: -1 is below 0"),
        (["--nproc_per_node", "0"], "argument --nproc_per_node: 0 is below 1"),
        (["--pixdim", "0", "0", "0"], "argument --pixdim: 0 mm is no voxel size"),
        (["--pixdim", "1.5", "nan", "2"], "argument --pixdim: nan mm is no voxel size"),
        (["--jobs", "two"], "argument --jobs: 'two' is not a whole number"),
    ],
)
def test_an_impossible_option_is_an_argparse_error_naming_it(tmp_path, capsys, option, expected):
    data = tmp_path / "mydata"
    write_dataset(data, num=9)
    assert expected in _refusal(capsys, benchmark_arguments(tmp_path, data, "--report-only", *option))


@pytest.mark.parametrize("option", ["--results", "--workdir"])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, option):
    data, path = tmp_path / "mydata", tmp_path / "taken.txt"
    write_dataset(data, num=9)
    path.write_text("")
    message = _refusal(
        capsys, [*benchmark_arguments(tmp_path, data, "--allow-dirty", "--arms", ATLAS), option, str(path)]
    )
    assert f"{option} {path} is a file; give a folder" in message
