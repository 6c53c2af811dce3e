"""Input checks: a bad image or label stops a workflow with the file's name, in the components and in the bundle."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

from conftest import CONFIGS
from semcl_components.bundle_runtime.input_checks import CheckFile, CheckGeometryd, CheckImage, CheckLabel

AFFINE = np.diag([1.5, 1.5, 1.5, 1.0])


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def volume(shape=(16, 16, 16), value: float = 0.0) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32) + np.random.default_rng(0).random(shape, dtype=np.float32)


def metatensor(array, name: str) -> MetaTensor:
    return MetaTensor(torch.as_tensor(array), affine=torch.tensor(AFFINE), meta={"filename_or_obj": name})


def messages(error: BaseException) -> str:
    """The messages of an exception and of every exception it was raised from (MONAI wraps transform errors)."""
    found = []
    while error is not None:
        found.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(found)


# ---------------------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_complete_nifti_passes(tmp_path, suffix):
    path = write_nifti(tmp_path / f"ct{suffix}", volume())
    assert CheckFile()(path) == path


@pytest.mark.parametrize("suffix, fraction", [(".nii.gz", 0.5), (".nii.gz", 0.97), (".nii", 0.6)])
def test_truncated_nifti_is_named(tmp_path, suffix, fraction):
    path = truncate(write_nifti(tmp_path / f"ct{suffix}", volume()), fraction)
    with pytest.raises(ValueError, match=rf"{path}: the file is (damaged or )?cut short"):
        CheckFile()(path)


def test_gzip_whose_content_is_too_short_for_its_header_is_named(tmp_path):
    path = write_nifti(tmp_path / "ct.nii.gz", volume())
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[: len(content) // 2]))  # a complete gzip stream of half the data
    with pytest.raises(ValueError, match=f"{path}: the file is cut short"):
        CheckFile()(path)


@pytest.mark.parametrize("path", ["", " "])
def test_empty_path_is_refused_not_read_as_the_working_folder(path):
    """MONAI Label passes an empty path for an unknown image id; as a Path it would be ".", which exists."""
    with pytest.raises(FileNotFoundError, match="no input file: the path is empty .*the image id is not one of"):
        CheckFile()(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.nii.gz")):
        CheckFile()(tmp_path / "nope.nii.gz")


# --------------------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.zeros((1, 16, 16), np.float32), r"ct.nii.gz: the network takes 3D images, got channel-first shape \(1, 16, 16\)"),
        (np.zeros((2, 8, 8, 8), np.float32), "ct.nii.gz: the network takes 1-channel images, got 2 channels"),
        (np.full((1, 8, 8, 8), np.nan, np.float32), "ct.nii.gz: 512 of 512 voxels are not finite"),
        (np.where(np.arange(512).reshape(1, 8, 8, 8) == 7, np.inf, 0.0), "ct.nii.gz: 1 of 512 voxels are not finite"),
    ],
    ids=["2d", "two_channels", "all_nan", "one_inf"],
)
def test_bad_image_is_named(array, expected):
    with pytest.raises(ValueError, match=expected):
        CheckImage(num_channels=1, spatial_dims=3)(metatensor(array, "/data/ct.nii.gz"))


def test_good_image_passes_unchanged():
    image = metatensor(np.zeros((1, 8, 8, 8), np.float32), "ct.nii.gz")
    assert CheckImage(num_channels=1)(image) is image


# --------------------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0, 1, 200], r"seg.nii.gz: label values \[200\] are not classes 0..8.*class_names lists \(8"),
        ([0, 0.5, 1], r"seg.nii.gz: label values must be integers, got \[0.5\]"),
        ([0, float("nan")], r"seg.nii.gz: label values must be integers, got \[nan\]"),
        ([0, -1], r"seg.nii.gz: label values \[-1\] are not classes"),
    ],
    ids=["beyond_classes", "non_integer", "nan", "negative"],
)
def test_bad_label_is_named(values, expected):
    label = np.zeros((1, 4, 4, 4), np.float32)
    label.flat[: len(values)] = values
    with pytest.raises(ValueError, match=expected):
        CheckLabel(num_classes=9)(metatensor(label, "seg.nii.gz"))


def test_background_only_label_is_refused_where_foreground_is_required():
    empty = metatensor(np.zeros((1, 4, 4, 4), np.float32), "seg.nii.gz")
    assert CheckLabel(num_classes=9)(empty) is empty  # allowed unless asked for
    with pytest.raises(ValueError, match=r"seg.nii.gz: the label map holds background only"):
        CheckLabel(num_classes=9, require_foreground=True)(empty)


def test_good_label_passes():
    label = metatensor(np.arange(64, dtype=np.float32).reshape(1, 4, 4, 4) % 9, "seg.nii.gz")
    assert CheckLabel(num_classes=9)(label) is label


# ------------------------------------------------------------------------------------------------------- geometry


def test_label_of_another_shape_names_both_files():
    data = {"image": metatensor(np.zeros((1, 8, 8, 8)), "ct.nii.gz"), "label": metatensor(np.zeros((1, 8, 8, 6)), "seg.nii.gz")}
    with pytest.raises(ValueError, match=r"image ct.nii.gz and label seg.nii.gz differ in shape: \(8, 8, 8\) vs \(8, 8, 6\)"):
        CheckGeometryd()(data)


def test_shifted_label_names_both_files():
    label = metatensor(np.zeros((1, 8, 8, 8)), "seg.nii.gz")
    label.affine[0, 3] += 30.0
    data = {"image": metatensor(np.zeros((1, 8, 8, 8)), "ct.nii.gz"), "label": label}
    with pytest.raises(ValueError, match=r"image ct.nii.gz and label seg.nii.gz differ in position.*by up to 30"):
        CheckGeometryd()(data)


def test_label_within_tolerance_passes():
    label = metatensor(np.zeros((1, 8, 8, 8)), "seg.nii.gz")
    label.affine[0, 3] += 1e-5  # float32 rounding of a header
    data = {"image": metatensor(np.zeros((1, 8, 8, 8)), "ct.nii.gz"), "label": label}
    assert CheckGeometryd()(data)["label"] is label


# --------------------------------------------------------------- every workflow's pipeline, one bad input at a time


def good_pair(folder: Path) -> tuple[Path, Path]:
    label = np.zeros((16, 16, 16), np.uint8)
    label[4:10, 4:10, 4:10] = 1
    return write_nifti(folder / "ct.nii.gz", volume() * 100), write_nifti(folder / "seg.nii.gz", label)


def bad_image(folder: Path, case: str) -> Path:
    if case == "truncated":
        return truncate(write_nifti(folder / "bad.nii.gz", volume()))
    if case == "all_nan":
        return write_nifti(folder / "bad.nii.gz", np.full((16, 16, 16), np.nan, np.float32))
    if case == "2d":
        return write_nifti(folder / "bad.nii.gz", volume((16, 16)))
    raise ValueError(case)


def bad_label(folder: Path, case: str) -> Path:
    label = np.zeros((16, 16, 16), np.float32)
    label[4:10, 4:10, 4:10] = 1
    affine = AFFINE.copy()
    if case == "value_200":
        label[0, 0, 0] = 200
    elif case == "non_integer":
        label[0, 0, 0] = 1.5
    elif case == "other_shape":
        label = label[:, :, :12]
    elif case == "shifted_30mm":
        affine[0, 3] += 30.0
    elif case == "background_only":
        label[:] = 0
    return write_nifti(folder / "badseg.nii.gz", label, affine)


def workflow_pipeline(config: str) -> Compose:
    """The deterministic preprocessing of a bundle workflow, as its config builds it (nothing else instantiated)."""
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser["bundle_root"] = str(CONFIGS.parent)
    key = "preprocessing" if config == "inference.yaml" else "train#deterministic_transforms"
    transforms = parser.get_parsed_content(key)
    return transforms if isinstance(transforms, Compose) else Compose(transforms)


IMAGE_CASES = {"truncated": "the file is (damaged or )?cut short", "all_nan": "not finite", "2d": "3D images"}
LABEL_CASES = {
    "value_200": r"label values \[200\] are not classes",
    "non_integer": "label values must be integers",
    "other_shape": "differ in shape",
    "shifted_30mm": "differ in position",
}


@pytest.mark.parametrize("config", ["pretrain.yaml", "train.yaml", "inference.yaml"])
@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_every_workflow_names_a_bad_image(tmp_path, config, case):
    _, label = good_pair(tmp_path)
    image = bad_image(tmp_path, case)
    data = {"image": str(image)} if config == "inference.yaml" else {"image": str(image), "label": str(label)}
    with pytest.raises(Exception) as caught:
        workflow_pipeline(config)(data)
    assert str(image) in messages(caught.value)
    assert re.search(IMAGE_CASES[case], messages(caught.value)), messages(caught.value)


@pytest.mark.parametrize("config", ["pretrain.yaml", "train.yaml"])
@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_every_training_workflow_names_a_bad_label(tmp_path, config, case):
    image, _ = good_pair(tmp_path)
    label = bad_label(tmp_path, case)
    with pytest.raises(Exception) as caught:
        workflow_pipeline(config)({"image": str(image), "label": str(label)})
    assert str(label) in messages(caught.value)
    assert re.search(LABEL_CASES[case], messages(caught.value)), messages(caught.value)


def test_segmentation_training_names_a_background_only_label(tmp_path):
    """An empty annotation (e.g. submitted through MONAI Label) stops segmentation training with its file name."""
    image, _ = good_pair(tmp_path)
    label = bad_label(tmp_path, "background_only")
    with pytest.raises(Exception) as caught:
        workflow_pipeline("train.yaml")({"image": str(image), "label": str(label)})
    assert str(label) in messages(caught.value) and "background only" in messages(caught.value)


@pytest.mark.parametrize("config", ["pretrain.yaml", "train.yaml"])
def test_good_pair_passes_every_training_workflow(tmp_path, config):
    image, label = good_pair(tmp_path)
    out = workflow_pipeline(config)({"image": str(image), "label": str(label)})
    assert out["image"].shape[0] == 1 and out["label"].shape == out["image"].shape


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_non_finite_voxels_are_found_in_the_file(tmp_path, suffix):
    """ITK reads a NaN voxel as 0, so NaN must be found in the file itself."""
    array = volume((72, 72, 72))  # 1.4 MB: the scan crosses a read-chunk boundary
    array[3, 5, 7], array[71, 71, 71] = np.nan, -np.inf
    path = write_nifti(tmp_path / f"ct{suffix}", array)
    with pytest.raises(ValueError, match=f"{path}: 2 voxels are not finite"):
        CheckFile()(path)


# ------------------------------------------------------------------------------------------------------ geometry


def sheared_affine(shear: float) -> np.ndarray:
    affine = AFFINE.copy()
    affine[0, 1] = shear  # the second voxel axis leans towards the first
    return affine


def test_inference_refuses_a_sheared_image_naming_it(tmp_path):
    """ITK's writer would coerce a non-orthogonal affine to an orthogonal one: the output would lie elsewhere."""
    image = write_nifti(tmp_path / "sheared.nii.gz", volume(), sheared_affine(0.25))
    with pytest.raises(Exception) as caught:
        workflow_pipeline("inference.yaml")({"image": str(image)})
    found = messages(caught.value)
    assert str(image) in found and "axes are not orthogonal" in found and "Resample the image" in found, found


def test_orthogonal_axes_pass_in_any_orientation():
    from scipy.spatial.transform import Rotation

    from semcl_components.bundle_runtime.input_checks import CheckOrthogonalAxes

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [10, -5, 20], degrees=True).as_matrix() @ np.diag([2.0, 0.7, 1.5])
    image = MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.as_tensor(affine), meta={"filename_or_obj": "tilted"})
    assert CheckOrthogonalAxes()(image) is image
    image.affine[:3, :3] += 1e-6  # float32 rounding of a header
    assert CheckOrthogonalAxes()(image) is image


# ----------------------------------------------------------------------------------------------- inference inputs


def test_dicom_folder_with_two_series_is_refused_naming_both(tmp_path):
    from conftest import write_dicom_series
    from semcl_components.bundle_runtime.inference_files import inference_inputs

    volume_ = (np.arange(8 * 8 * 4).reshape(8, 8, 4) % 50).astype(np.int16)
    geometry = (np.array([1.0, 1.0, 2.0]), np.zeros(3), np.eye(3))
    try:
        write_dicom_series(volume_, *geometry, tmp_path / "study", series=2)
    except Exception as error:  # ITK built without GDCM: the DICOM path cannot be tested here
        pytest.skip(f"could not write a DICOM series with ITK/GDCM: {error!r}")
    assert inference_inputs(tmp_path / "study") == [{"image": str((tmp_path / "study").absolute())}]
    write_dicom_series(volume_, *geometry, tmp_path / "study", series=5)
    with pytest.raises(ValueError, match=r"study holds 2 DICOM series: .*\.2 \(4 files\), .*\.5 \(4 files\)"):
        inference_inputs(tmp_path / "study")


def test_inference_folder_with_two_files_of_one_case_is_refused_naming_both(tmp_path):
    """``case.nii`` and ``case.nii.gz`` would both be written as ``case_seg.nii.gz``: the first result would be lost."""
    from semcl_components.bundle_runtime.inference_files import inference_inputs

    folder = tmp_path / "cases"
    folder.mkdir()
    for name in ("case.nii", "case.nii.gz", "other.nii.gz"):
        write_nifti(folder / name, volume((4, 4, 4)))
    with pytest.raises(ValueError, match=r"case\.nii and case\.nii\.gz, .* both .*case_seg"):
        inference_inputs(folder)
    (folder / "case.nii").rename(folder / "case_plain.nii")
    assert [Path(item["image"]).name for item in inference_inputs(folder)] == [
        "case.nii.gz", "case_plain.nii", "other.nii.gz"
    ]
