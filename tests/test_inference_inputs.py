"""What inference reads from a folder, and what it says about it (issue 35, items 8, 9 and 10).

- Item 8: every volume file ITK reads is segmented (``.mha``, ``.nrrd``, ``CASE.NII.GZ``...); every other file is
  named as skipped; a folder with nothing to segment stops the run with a non-zero exit naming its files.
- Item 9: an earlier run's segmentations (``*_seg``) are skipped with a note; no input is read from ``output_dir``.
- Item 10: an image unlike the training data (not CT in HU, all air, a voxel size far from ``pixdim``) is segmented
  with one logged WARNING naming it and what was seen.

The component tests are fast; the bundle tests run ``python -m monai.bundle run`` on ``inference.yaml`` with an
untrained tiny network (``--load_pretrain false``): what is checked here happens before and around the network.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from conftest import TINY_INFERENCE_ARGS
from semcl_components.bundle_runtime.inference_files import inference_inputs, segmentation_name
from semcl_components.bundle_runtime.input_checks import CheckTrainingDomain

AFFINE = np.diag([1.5, 1.5, 1.5, 1.0])


def ct_volume(shape: tuple[int, int, int] = (16, 16, 16)) -> np.ndarray:
    """A small CT-like volume in HU: air around a soft-tissue block (int16)."""
    volume = np.full(shape, -1000, np.int16)
    volume[4:-4, 4:-4, 4:-4] = 40
    return volume


def write_itk(path: Path, volume: np.ndarray, spacing: float = 1.5) -> Path:
    """``volume`` (x, y, z) written by ITK in the format its suffix names (``.mha``, ``.nrrd``...)."""
    import itk

    image = itk.image_from_array(np.ascontiguousarray(volume.T))  # ITK arrays are (z, y, x)
    image.SetSpacing([spacing] * 3)
    itk.imwrite(image, str(path))
    return path


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    return path


def names(items: list[dict]) -> list[str]:
    return [Path(item["image"]).name for item in items]


def inference_args(dataset: Path, input_path: Path, output_dir: Path) -> list:
    return [
        "--dataset_dir",
        dataset,
        "--input_path",
        input_path,
        "--output_dir",
        output_dir,
        "--load_pretrain",
        "false",
        *TINY_INFERENCE_ARGS,
    ]


def phantom(dataset: Path) -> nib.Nifti1Image:
    return nib.load(dataset / "imagesTr" / "phantom_001.nii.gz")


# ---------------------------------------------------------------------------------------------------------------------
# item 8: a folder's volume files, in any format ITK reads and in any case
# ---------------------------------------------------------------------------------------------------------------------


def test_folder_lists_every_volume_file_itk_reads_and_names_the_rest(tmp_path, caplog):
    folder = tmp_path / "cases"
    folder.mkdir()
    write_itk(folder / "a.mha", ct_volume())
    write_itk(folder / "b.nrrd", ct_volume())
    write_itk(folder / "c.mhd", ct_volume())  # and its c.raw, which is no case of its own
    write_nifti(folder / "D.NII.GZ", ct_volume())
    write_nifti(folder / "e.nii", ct_volume()).rename(folder / "e.Nii")  # nibabel writes .nii in lower case
    (folder / "notes.txt").write_text("scanner protocol")
    (folder / "more").mkdir()
    (folder / ".DS_Store").write_text("")
    with caplog.at_level(logging.WARNING):
        found = inference_inputs(folder)
    assert names(found) == ["D.NII.GZ", "a.mha", "b.nrrd", "c.mhd", "e.Nii"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].endswith(": more/, notes.txt"), skipped
    assert "subfolders are not searched" in skipped[0]


def test_two_formats_of_one_case_are_refused_naming_both(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    write_itk(folder / "case.mha", ct_volume())
    write_nifti(folder / "case.NII.GZ", ct_volume())
    with pytest.raises(ValueError, match=r"holds case\.NII\.GZ and case\.mha, .* both .* case_seg\.nii\.gz"):
        inference_inputs(folder)


def test_folder_with_nothing_to_segment_is_refused_naming_its_files(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "readme.txt").write_text("")
    (folder / "preview.png").write_bytes(b"\x89PNG")
    with pytest.raises(
        ValueError,
        match=r"export holds no image this bundle reads: no volume file \(\.nii, \.nii\.gz, "
        r"\.mha, .*\) and no DICOM series among its files: preview\.png, readme\.txt",
    ):
        inference_inputs(folder)
    (folder / "readme.txt").unlink()
    (folder / "preview.png").unlink()
    (folder / "sub").mkdir()
    with pytest.raises(ValueError, match=r"holds no image: .* \(it holds only the folders sub/"):
        inference_inputs(folder)


@pytest.mark.parametrize(
    "subject, written",
    [
        ("/in/CASE.NII.GZ", "CASE_seg.nii.gz"),
        ("/in/case.v2.nii.gz", "case.v2_seg.nii.gz"),
        ("/in/scan.mha", "scan_seg.nii.gz"),
        ("/in/scan.nrrd", "scan_seg.nii.gz"),
        ("/in/series", "series_seg.nii.gz"),  # a DICOM series folder
    ],
)
def test_segmentations_are_named_after_the_case(tmp_path, subject, written):
    from monai.transforms import SaveImage

    saver = SaveImage(output_dir=tmp_path, output_postfix="seg", separate_folder=False)
    assert saver.folder_layout.filename(**segmentation_name({"filename_or_obj": subject}, saver)) == str(
        tmp_path / written
    )


def test_inference_segments_mha_nrrd_and_upper_case_nifti_files_of_a_folder(run_bundle, phantom_dataset, tmp_path):
    """Before: the folder's three images were skipped without a word (with only CASE_C.NII.GZ: "no DICOMs in")."""
    source = phantom(phantom_dataset)
    volume = np.asanyarray(source.dataobj).astype(np.int16)
    folder = tmp_path / "in"
    folder.mkdir()
    write_itk(folder / "case_a.mha", volume)
    write_itk(folder / "case_b.nrrd", volume)
    write_nifti(folder / "CASE_C.NII.GZ", volume, source.affine)
    (folder / "notes.txt").write_text("")
    run = run_bundle(["inference"], inference_args(phantom_dataset, folder, tmp_path / "out"))
    written = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert written == ["CASE_C_seg.nii.gz", "case_a_seg.nii.gz", "case_b_seg.nii.gz"], written
    for name in written:
        seg = nib.load(tmp_path / "out" / name)
        assert seg.shape == volume.shape and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(nib.load(tmp_path / "out" / "CASE_C_seg.nii.gz").affine, source.affine, atol=1e-4)
    assert re.search(r"WARNING - inference input folder .*in: skipped 1 entry .*: notes\.txt", run.log), run.log[-3000:]


def test_inference_on_a_folder_without_images_exits_non_zero_naming_its_files(run_bundle, phantom_dataset, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("")
    run = run_bundle(["inference"], inference_args(phantom_dataset, folder, tmp_path / "out"), expect_success=False)
    assert run.returncode != 0
    assert f"inference input folder {folder} holds no image this bundle reads" in run.log, run.log[-3000:]
    assert "among its files: notes.txt. Nothing was segmented." in run.log
    assert not list(tmp_path.rglob("*_seg.nii.gz"))


# ---------------------------------------------------------------------------------------------------------------------
# item 9: an earlier run's outputs are no inputs
# ---------------------------------------------------------------------------------------------------------------------


def test_earlier_segmentations_are_skipped_with_a_note(tmp_path, caplog):
    folder = tmp_path / "cases"
    folder.mkdir()
    for name in ("ct.nii.gz", "ct_seg.nii.gz", "old.mha", "OLD_SEG.NII.GZ"):
        write_nifti(folder / name, ct_volume()) if "nii" in name.lower() else write_itk(folder / name, ct_volume())
    with caplog.at_level(logging.WARNING):
        assert names(inference_inputs(folder, tmp_path / "out", "seg")) == ["ct.nii.gz", "old.mha"]
    (note,) = [r.getMessage() for r in caplog.records]
    assert note.endswith(
        "skipped 2 segmentation(s) of an earlier run (names ending in _seg, this bundle's outputs): "
        "OLD_SEG.NII.GZ, ct_seg.nii.gz"
    ), note
    for name in ("ct.nii.gz", "old.mha"):
        (folder / name).unlink()
    with pytest.raises(
        ValueError,
        match=r"holds no image to segment, only segmentations of an earlier run .*"
        r"OLD_SEG\.NII\.GZ, ct_seg\.nii\.gz\. Give the folder of the images",
    ):
        inference_inputs(folder, tmp_path / "out", "seg")


@pytest.mark.parametrize("given", ["folder", "file", "link"])
def test_no_input_is_read_from_the_output_folder(tmp_path, given):
    folder = tmp_path / "cases"
    folder.mkdir()
    image = write_nifti(folder / "ct.nii.gz", ct_volume())
    output_dir = folder
    if given == "link":
        output_dir = tmp_path / "link"
        output_dir.symlink_to(folder)
    path = image if given == "file" else folder
    with pytest.raises(
        ValueError,
        match=rf"inference input {re.escape(str(path))} is in the output folder "
        rf"{re.escape(str(output_dir))} \(output_dir\): inference reads no image",
    ):
        inference_inputs(path, output_dir)
    assert names(inference_inputs(path, tmp_path / "elsewhere")) == ["ct.nii.gz"]


def test_inference_skips_an_earlier_runs_segmentations_in_its_input_folder(run_bundle, phantom_dataset, tmp_path):
    """Before: ``ct_seg.nii.gz``, a first run's output beside its image, was segmented too (``ct_seg_seg.nii.gz``)."""
    source = phantom(phantom_dataset)
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "ct.nii.gz", np.asanyarray(source.dataobj), source.affine)
    write_nifti(folder / "ct_seg.nii.gz", (np.asanyarray(source.dataobj) > 0).astype(np.uint8), source.affine)
    run = run_bundle(["inference"], inference_args(phantom_dataset, folder, tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["ct_seg.nii.gz"]
    assert re.search(
        r"WARNING - inference input folder .*in: skipped 1 segmentation\(s\) of an earlier run "
        r"\(names ending in _seg, this bundle's outputs\): ct_seg\.nii\.gz",
        run.log,
    ), run.log[-3000:]


def test_inference_into_its_input_folder_is_refused(run_bundle, phantom_dataset, tmp_path):
    source = phantom(phantom_dataset)
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "ct.nii.gz", np.asanyarray(source.dataobj), source.affine)
    run = run_bundle(["inference"], inference_args(phantom_dataset, folder, folder), expect_success=False)
    assert run.returncode != 0
    assert f"inference input {folder} is in the output folder {folder} (output_dir)" in run.log, run.log[-3000:]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["ct.nii.gz"]


# ---------------------------------------------------------------------------------------------------------------------
# item 10: images unlike the training data are segmented with a warning
# ---------------------------------------------------------------------------------------------------------------------

UNLIKE_CT = {
    # name: (volume from a CT volume in HU, voxel size in mm, what the warning says)
    "mri": (lambda ct: (np.clip(ct + 1024, 0, None) * 0.8).astype(np.float32), 1.5, "no voxel below -500 (values "),
    "eight_bit": (lambda ct: np.clip((ct + 1024) / 6, 0, 255).astype(np.uint8), 1.5, "; an 8-bit image?)"),
    "offset": (lambda ct: (ct + 1024).astype(np.uint16), 1.5, "without its -1024 rescale intercept"),
    "air": (
        lambda ct: np.full(ct.shape, -1024, np.int16) + (np.arange(ct.size) % 7).reshape(ct.shape).astype(np.int16),
        1.5,
        "0.00% of the voxels inside the window (values -1024 to -1018",
    ),
    "tiny_voxels": (lambda ct: ct, 0.05, "voxel size 0.05 x 0.05 x 0.05 mm (outside 0.15-15 mm"),
}


def metatensor(volume: np.ndarray, spacing: float, name: str) -> MetaTensor:
    affine = torch.diag(torch.tensor([spacing, spacing, spacing, 1.0], dtype=torch.float64))
    return MetaTensor(torch.as_tensor(volume[None].astype(np.float32)), affine=affine, meta={"filename_or_obj": name})


@pytest.mark.parametrize("name", sorted(UNLIKE_CT))
def test_an_image_unlike_the_training_data_is_named_in_one_warning(name, caplog):
    make, spacing, seen = UNLIKE_CT[name]
    check = CheckTrainingDomain(hu_min=-175, hu_max=250, pixdim=[1.5, 1.5, 1.5])
    image = metatensor(make(ct_volume()), spacing, f"/data/{name}.nii.gz")
    with caplog.at_level(logging.WARNING):
        assert check(image) is image  # a warning, never a refusal
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "\n" not in record.getMessage()
    assert record.getMessage().startswith(
        f"/data/{name}.nii.gz: unlike the model's training data (CT in Hounsfield "
        "units, window [-175, 250] HU, 1.5 x 1.5 x 1.5 mm voxels): "
    )
    assert seen in record.getMessage(), record.getMessage()


@pytest.mark.parametrize("spacing", [0.6, 1.5, 5.0])
def test_ct_in_hounsfield_units_passes_without_a_word(spacing, caplog):
    with caplog.at_level(logging.WARNING):
        CheckTrainingDomain(hu_min=-175, hu_max=250, pixdim=[1.5, 1.5, 1.5])(metatensor(ct_volume(), spacing, "ct"))
    assert not caplog.records


def test_inference_warns_once_per_image_unlike_the_training_data(run_bundle, phantom_dataset, tmp_path):
    """Before: all six were segmented without a word. Now each of the five unlike CT gets one WARNING line naming
    it and what was seen; the phantom CT gets none; all six are segmented."""
    source = phantom(phantom_dataset)
    ct = np.asanyarray(source.dataobj).astype(np.int16)
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "ct.nii.gz", ct, source.affine)
    for name, (make, spacing, _) in UNLIKE_CT.items():
        write_nifti(folder / f"{name}.nii.gz", make(ct), np.diag([spacing, spacing, spacing, 1.0]))
    run = run_bundle(["inference"], inference_args(phantom_dataset, folder, tmp_path / "out"))
    assert len(list((tmp_path / "out").glob("*_seg.nii.gz"))) == 6
    warnings = [line for line in run.log.splitlines() if " - WARNING - " in line and "training data" in line]
    for name, (_, _, seen) in UNLIKE_CT.items():
        (line,) = [w for w in warnings if f"{folder / name}.nii.gz: unlike the model's training data" in w]
        assert seen in line, line
    assert len(warnings) == len(UNLIKE_CT), warnings
