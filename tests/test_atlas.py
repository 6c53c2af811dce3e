"""The atlas baseline (semcl_benchmark.atlas): labelled maps moved onto a test image, a majority vote, Dice."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from semcl_benchmark.atlas import atlas_registration, evaluate_atlas, majority_vote, move_label_map


def body_with_organ(shape, box, organ, air=-1000.0) -> tuple[np.ndarray, np.ndarray]:
    """An image with a soft-tissue body in ``box`` (slices) and a label with organ 1 in ``organ`` (slices)."""
    image = np.full(shape, air, dtype=np.float32)
    image[box] = 40.0
    label = np.zeros(shape, dtype=np.uint8)
    label[organ] = 1
    return image, label


def test_a_body_box_registration_maps_a_shifted_and_scaled_body_onto_the_test_body():
    atlas_image, atlas_label = body_with_organ((20, 20, 20), np.s_[2:12, 2:12, 2:12], np.s_[2:7, 2:12, 2:12])
    test_image, test_label = body_with_organ((20, 20, 20), np.s_[4:19, 4:19, 4:19], np.s_[4:11, 4:19, 4:19])
    matrix = atlas_registration("body_box", atlas_image, test_image, np.eye(4), np.eye(4))
    moved = move_label_map(atlas_label, matrix, test_label.shape)
    as_is = move_label_map(atlas_label, atlas_registration("as_is", atlas_image, test_image, np.eye(4), np.eye(4)),
                           test_label.shape)
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(moved == 1, test_label == 1) > 0.9 > dice(as_is == 1, test_label == 1)


def test_a_body_box_registration_maps_the_first_and_last_body_voxels_onto_the_atlas_ones():
    atlas_image, _ = body_with_organ((20, 20, 20), np.s_[2:12, 3:9, 1:19], np.s_[2:4, 3:5, 1:3])
    test_image, _ = body_with_organ((20, 20, 20), np.s_[4:19, 0:20, 5:10], np.s_[4:6, 0:2, 5:7])
    matrix = atlas_registration("body_box", atlas_image, test_image, np.eye(4), np.eye(4))
    test_corners = np.array([[4, 0, 5, 1], [18, 19, 9, 1]], dtype=float)  # first and last body voxel per axis
    np.testing.assert_allclose(test_corners @ matrix.T, [[2, 3, 1, 1], [11, 8, 18, 1]])


def test_a_centroid_registration_is_a_translation_of_the_body_centroid():
    atlas_image, _ = body_with_organ((16, 16, 16), np.s_[2:8, 2:8, 2:8], np.s_[2:4, 2:4, 2:4])
    test_image, _ = body_with_organ((16, 16, 16), np.s_[5:11, 6:12, 7:13], np.s_[5:7, 6:8, 7:9])
    matrix = atlas_registration("centroid", atlas_image, test_image, np.eye(4), np.eye(4))
    np.testing.assert_allclose(matrix[:3, :3], np.eye(3))
    np.testing.assert_allclose(matrix[:3, 3], [-3, -4, -5])


def test_as_is_follows_the_affines_and_outside_the_map_is_background():
    label = np.zeros((4, 4, 4), dtype=np.uint8)
    label[0, 0, 0] = 2
    test_affine = np.eye(4)
    test_affine[:3, 3] = [-1, 0, 0]  # the test grid starts one voxel further left
    matrix = atlas_registration("as_is", np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), np.eye(4), test_affine)
    moved = move_label_map(label, matrix, (4, 4, 4))
    assert moved[1, 0, 0] == 2 and moved.sum() == 2


def test_majority_vote_takes_the_most_frequent_class_and_breaks_ties_towards_background():
    maps = [np.array([[[1, 1, 0, 2]]]), np.array([[[1, 0, 0, 2]]]), np.array([[[2, 0, 0, 0]]])]
    np.testing.assert_array_equal(majority_vote(maps, 3), [[[1, 0, 0, 2]]])
    np.testing.assert_array_equal(majority_vote(maps[:2], 3), [[[1, 0, 0, 2]]])  # 1 vs 0: a tie -> background


def test_an_image_without_a_body_is_named():
    with pytest.raises(ValueError, match="no voxel above -500.0 HU"):
        atlas_registration("centroid", np.full((4, 4, 4), -1000.0), np.zeros((4, 4, 4)), np.eye(4), np.eye(4))


def test_evaluate_atlas_scores_each_test_case_and_class_with_nan_for_an_absent_class(tmp_path):
    """Two labelled maps, two test cases; class 2 is absent from the second test case (its Dice is None)."""
    shape, affine = (12, 12, 8), np.diag([2.0, 2.0, 3.0, 1.0])
    entries = {}
    for name, organ2 in (("a", True), ("b", True), ("t1", True), ("t2", False)):
        image, label = body_with_organ(shape, np.s_[1:11, 1:11, 1:7], np.s_[2:6, 2:6, 2:5])
        if organ2:
            label[7:10, 7:10, 2:5] = 2
        for kind, array in (("image", image), ("label", label)):
            nib.save(nib.Nifti1Image(array, affine), tmp_path / f"{kind}_{name}.nii.gz")
        entries[name] = {"image": f"image_{name}.nii.gz", "label": f"label_{name}.nii.gz"}
    result = evaluate_atlas("body_box", [entries["a"], entries["b"]], [entries["t1"], entries["t2"]], tmp_path,
                            [2.0, 2.0, 3.0], ["liver", "spleen"])
    assert result["test"]["cases"] == ["image_t1.nii.gz", "image_t2.nii.gz"]
    assert result["test"]["dice"][0] == [1.0, 1.0] and result["test"]["dice"][1][0] == 1.0
    assert result["test"]["dice"][1][1] is None  # spleen absent from t2: not scored
    assert result["test_summary"]["val_mean_dice"] == {"liver": 1.0, "spleen": 1.0}
    counts = np.array(result["confusion_matrix"]["counts"])
    assert counts.shape == (3, 3) and counts[0, 2] == 27  # t2's background voxels voted spleen
