"""The benchmark's atlas arms and embedding runs on a user's dataset check their inputs as the bundle's workflows do,
and a run that fails names the file and the problem, not MONAI's transform wrapper (issue 35, item 14).

Through the benchmark's command on a tiny dataset (``test_benchmark_user_data.write_dataset``), running only an atlas
arm, which trains nothing; the embedding run is done alone, without the benchmark's schedule.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_benchmark_user_data import TINY, write_dataset

from semcl_benchmark.cli import main

ATLAS = "atlas_body_box"


def benchmark_arguments(tmp_path: Path, data: Path, *more: str, results: Path | None = None) -> list[str]:
    """The benchmark's command line for the tiny size on ``data``, with its own work folder (and ``results``)."""
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(TINY)
    folders = [] if results is None else ["--results", str(results), "--workdir", str(results.parent / "work")]
    return ["--protocol", str(protocol), "--size", "tiny", "--dataset_dir", str(data), *folders, *more]


def rewrite_labels(folder: Path, change) -> None:
    """Every label map of the dataset rewritten as ``change(array, affine) -> (array, affine)``."""
    for path in sorted((folder / "labelsTr").glob("*.nii.gz")):
        label = nib.load(path)
        array, affine = change(np.asarray(label.dataobj), label.affine.copy())
        nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), path)


# --------------------------------------------------------------------------- item 14: the atlas checks its inputs


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda label, affine: (np.where(label == 3, 7, label), affine), "label values [7] are not classes 0..3"),
        (
            lambda label, affine: (label, affine + np.pad([[4.0], [0.0], [0.0]], ((0, 1), (3, 0)))),  # 4 mm along x
            "differ in position or orientation",
        ),
    ],
    ids=["extra-label-id", "label-on-another-grid"],
)
def test_an_atlas_run_stops_on_a_faulty_label_naming_the_file(tmp_path, capsys, change, expected):
    """Item 14: an atlas used a label with an unknown id (then failed with 'index 3 is out of bounds') or on another
    grid (silently); it now checks its inputs as the bundle's workflows do."""
    data, results = tmp_path / "mydata", tmp_path / "out" / "results"
    write_dataset(data, num=9)
    rewrite_labels(data, change)
    assert main(benchmark_arguments(tmp_path, data, "--arms", ATLAS, "--allow-dirty", results=results)) == 1
    failed = next(line for line in capsys.readouterr().out.splitlines() if "FAILED" in line)
    assert f"FAILED atlas__{ATLAS}__finetune_1__seed0" in failed and expected in failed
    assert str(data / "labelsTr") in failed and not list(results.glob("atlas__*.json"))


def test_an_embedding_run_that_fails_names_the_file_not_the_transform(tmp_path):
    """The embedding stage's failure read 'applying transform <...CheckLabeld object>': MONAI's wrapper, which names
    no file; the benchmark reports the input check's own message."""
    from semcl_benchmark.protocol import load_protocol
    from semcl_benchmark.runner import Benchmark, failure_reason

    data = tmp_path / "mydata"
    write_dataset(data, num=9)
    rewrite_labels(data, lambda label, affine: (np.where(label == 3, 5, label), affine))
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(TINY)
    size = load_protocol([protocol]).sizes["tiny"]
    benchmark = Benchmark(
        size,
        tmp_path / "results",
        tmp_path / "work",
        protocol=load_protocol([protocol]),
        dataset_dir=data,
        device="cpu",
    )
    (run,) = [r for r in benchmark.plan(["scratch"], ["finetune_1"], [0]) if r.config["stage"] == "embedding"]
    benchmark.stages.data([0])
    with pytest.raises(RuntimeError) as raised:
        benchmark.stages(run)
    assert str(raised.value).startswith("applying transform")
    reason = failure_reason(raised.value)
    assert reason.startswith(str(data / "labelsTr")) and "label values [5] are not classes 0..3" in reason
