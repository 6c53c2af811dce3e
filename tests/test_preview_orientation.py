"""Preview pictures in radiological convention: oriented by the affine, patient's right on the image's left."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from semcl_phantoms.anatomy import LABEL_NAMES
from semcl_phantoms.phantoms import write_phantom_dataset
from semcl_phantoms.preview import oriented_slice, write_cohort_preview, write_comparison, write_preview

SPLEEN, LIVER = 1, 5


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, label, affine) of the first subject of a tiny realistic dataset, as nibabel reads them."""
    out = tmp_path_factory.mktemp("orientation") / "ds"
    write_phantom_dataset(out, num=4, seed=0, size=(32, 32, 24), preset="realistic", preview=False, verbose=False)
    image = nib.load(out / "imagesTr" / "phantom_000.nii.gz")
    label = nib.load(out / "labelsTr" / "phantom_000.nii.gz")
    return image.get_fdata(dtype=np.float32), np.asarray(label.dataobj, dtype=np.uint8), image.affine


def _reorder(volume: np.ndarray, affine: np.ndarray, flips: tuple[int, ...], perm: tuple[int, int, int]):
    """The same world content stored otherwise: voxel axes ``flips`` reversed, then axes transposed by ``perm``."""
    affine = np.asarray(affine, dtype=float).copy()
    for axis in flips:
        volume = np.flip(volume, axis)
        step = np.eye(4)
        step[axis, axis], step[axis, 3] = -1.0, volume.shape[axis] - 1.0
        affine = affine @ step
    permute = np.eye(4)
    permute[:3, :3] = np.eye(3)[:, list(perm)]
    return np.ascontiguousarray(volume.transpose(perm)), affine @ permute


def _both_organs_index(label: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A voxel whose axial slice holds both the liver and the spleen (the most of the smaller of the two)."""
    ras = nib.as_closest_canonical(nib.Nifti1Image(label, affine))
    canonical = np.asarray(ras.dataobj)
    counts = np.minimum((canonical == LIVER).sum(axis=(0, 1)), (canonical == SPLEEN).sum(axis=(0, 1)))
    assert counts.max() > 0, "no axial slice holds both the liver and the spleen"
    world = ras.affine @ np.array([0.0, 0.0, float(counts.argmax()), 1.0])
    return (np.linalg.inv(affine) @ world)[:3]


def test_phantom_is_ras_and_axial_slice_puts_the_liver_on_the_left(phantom):
    image, label, affine = phantom
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    liver_world = affine @ np.append(np.argwhere(label == LIVER).mean(axis=0), 1.0)
    spleen_world = affine @ np.append(np.argwhere(label == SPLEEN).mean(axis=0), 1.0)
    assert liver_world[0] > 0 > spleen_world[0]  # RAS+: the patient's right (liver) at positive world x

    axial = oriented_slice(label, affine, "axial", _both_organs_index(label, affine))
    half = axial.pixels.shape[1] / 2
    liver_columns = np.nonzero(axial.pixels == LIVER)[1]
    spleen_columns = np.nonzero(axial.pixels == SPLEEN)[1]
    assert len(liver_columns) and len(spleen_columns)
    assert liver_columns.mean() < half < spleen_columns.mean()  # radiological: patient's right on the image's left
    assert (liver_columns < half).mean() > 0.9 and (spleen_columns > half).mean() > 0.9


def test_anterior_is_at_the_top_of_axial_and_superior_at_the_top_of_coronal():
    volume = np.zeros((6, 8, 10), dtype=np.uint8)
    volume[:, 7, :] = 1  # most anterior row
    volume[:, :, 9] = 2  # most superior slice
    volume[0, :, :] = 3  # most left column (RAS+: x = 0 is the patient's left)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    axial = oriented_slice(volume, affine, "axial", (3, 4, 5))
    assert (axial.pixels[0, :-1] == 1).all() and (axial.pixels[:, -1] == 3).all()
    assert axial.pixels.shape == (8, 6) and axial.spacing == (2.0, 1.0)
    coronal = oriented_slice(volume, affine, "coronal", (3, 4, 5))
    assert (coronal.pixels[0, :-1] == 2).all() and (coronal.pixels[:, -1] == 3).all()
    assert coronal.pixels.shape == (10, 6) and coronal.spacing == (3.0, 1.0)
    sagittal = oriented_slice(volume, affine, "sagittal", (3, 4, 5))
    assert (sagittal.pixels[1:, 0] == 1).all() and (sagittal.pixels[0] == 2).all()  # anterior on the left
    assert sagittal.pixels.shape == (10, 8) and sagittal.spacing == (3.0, 2.0)


@pytest.mark.parametrize("flips, perm", [((0,), (0, 1, 2)), ((0, 2), (0, 1, 2)), ((1,), (2, 0, 1))])
def test_the_same_world_stored_otherwise_draws_the_same_picture(phantom, tmp_path, flips, perm):
    image, label, affine = phantom
    image2, affine2 = _reorder(image, affine, flips, perm)
    label2, _ = _reorder(label, affine, flips, perm)
    index = _both_organs_index(label, affine)
    index2 = (np.linalg.inv(affine2) @ affine @ np.append(index, 1.0))[:3]
    for plane in ("axial", "coronal", "sagittal"):
        one, two = oriented_slice(label, affine, plane, index), oriented_slice(label2, affine2, plane, index2)
        assert np.array_equal(one.pixels, two.pixels) and one.letters == two.letters and one.spacing == two.spacing

    prediction, prediction2 = np.where(label == LIVER, 0, label), np.where(label2 == LIVER, 0, label2)
    writers = {
        "preview": lambda i, lab, p, a, path: write_preview(i, lab, a, LABEL_NAMES, path),
        "cohort": lambda i, lab, p, a, path: write_cohort_preview([(i, lab, a, "000")], LABEL_NAMES, path),
        "comparison": lambda i, lab, p, a, path: write_comparison(i, lab, p, a, LABEL_NAMES, path, caption="000"),
    }
    for name, write in writers.items():
        write(image, label, prediction, affine, tmp_path / f"{name}_1.png")
        write(image2, label2, prediction2, affine2, tmp_path / f"{name}_2.png")
        assert np.array_equal(_pixels(tmp_path / f"{name}_1.png"), _pixels(tmp_path / f"{name}_2.png")), name


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def test_comparison_shows_where_the_prediction_differs(phantom, tmp_path):
    image, label, affine = phantom
    write_comparison(image, label, label, affine, LABEL_NAMES, tmp_path / "same.png", caption="phantom_000 Dice 1.000")
    missed = np.where(label == LIVER, 0, label)
    write_comparison(image, label, missed, affine, LABEL_NAMES, tmp_path / "miss.png", caption="phantom_000 Dice 1.000")
    same, miss = _pixels(tmp_path / "same.png"), _pixels(tmp_path / "miss.png")
    height, width = same.shape[:2]
    assert same.shape == miss.shape and 3 * 64 < width < 3000 and 2 * 64 < height < 2000
    differs = np.any(same != miss, axis=-1)
    rows, columns = np.nonzero(differs)
    assert len(columns) > 500  # the liver is missing from the prediction's panels, in both rows
    assert columns.min() >= 2 * width / 3  # only the prediction column (the last of three) changes
    assert rows.min() < height / 2 < rows.max()


def test_letters_at_each_edge():
    volume, affine = np.zeros((4, 5, 6)), np.eye(4)
    expected = {
        "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
        "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
        "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
    }
    for plane, letters in expected.items():
        assert oriented_slice(volume, affine, plane, (1, 2, 3)).letters == letters
        # an LPS-stored volume (x and y flipped) gets the same letters
        lps = np.diag([-1.0, -1.0, 1.0, 1.0])
        assert oriented_slice(volume, lps, plane, (1, 2, 3)).letters == letters
    with pytest.raises(ValueError, match="plane"):
        oriented_slice(volume, affine, "oblique", (1, 2, 3))
