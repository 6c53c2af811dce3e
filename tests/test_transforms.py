"""Tests for semcl_components.transforms: attention masks, multi-view pipelines, empty-mask filtering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CopyItemsd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandSpatialCropd,
    RandSpatialCropSamplesd,
)

from semcl_components.transforms import (
    MASK_MODES,
    DropEmptyMasks,
    DropEmptyMasksd,
    GenerateAttentionMasks,
    GenerateAttentionMasksd,
    RandMultiViewd,
)


pytestmark = pytest.mark.usefixtures("deterministic")


def _label_2d() -> torch.Tensor:
    """(1, 16, 16) label: class 1 = 4x4 square, class 3 = 3x5 rectangle."""
    label = torch.zeros(1, 16, 16)
    label[0, 2:6, 2:6] = 1
    label[0, 9:12, 8:13] = 3
    return label


def _label_3d() -> torch.Tensor:
    """(1, 16, 16, 16) label: class 2 = 4^3 cube, class 5 = 3x4x5 box."""
    label = torch.zeros(1, 16, 16, 16)
    label[0, 2:6, 2:6, 2:6] = 2
    label[0, 9:12, 8:12, 7:12] = 5
    return label


def _label_many_classes() -> torch.Tensor:
    """(1, 16, 16) label holding classes 1..5, each a 2x2 square."""
    label = torch.zeros(1, 16, 16)
    for k in range(1, 6):
        label[0, 3 * k - 2 : 3 * k, 3 * k - 2 : 3 * k] = k
    return label


# ---------------------------------------------------------------- GenerateAttentionMasks: exact mode and types


@pytest.mark.parametrize("make_label, expected_ids", [(_label_2d, [1, 3]), (_label_3d, [2, 5])])
def test_exact_masks_equal_label_per_class(make_label, expected_ids):
    label = make_label()
    masks, class_ids = GenerateAttentionMasks()(label)
    assert masks.shape == (len(expected_ids), *label.shape[1:])
    assert masks.dtype == torch.float32
    assert class_ids.dtype == torch.int64
    assert class_ids.tolist() == expected_ids
    for mask, k in zip(masks, expected_ids):
        assert torch.equal(mask, (label[0] == k).float())


def test_numpy_label_gives_numpy_outputs():
    masks, class_ids = GenerateAttentionMasks()(_label_2d().numpy().astype(np.int32))
    assert isinstance(masks, np.ndarray) and masks.dtype == np.float32 and masks.shape == (2, 16, 16)
    assert isinstance(class_ids, np.ndarray) and class_ids.dtype == np.int64
    assert class_ids.tolist() == [1, 3]


def test_integer_tensor_label_is_accepted():
    masks, class_ids = GenerateAttentionMasks()(_label_3d().to(torch.uint8))
    assert class_ids.tolist() == [2, 5]
    assert masks.dtype == torch.float32


def test_metatensor_label_keeps_affine_and_meta():
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([10.0, -5.0, 3.0], dtype=torch.float64)
    label = MetaTensor(_label_3d(), affine=affine, meta={"filename_or_obj": "case_01.nii.gz"})
    masks, class_ids = GenerateAttentionMasks(mask_mode="dilate")(label)
    assert isinstance(masks, MetaTensor)
    assert torch.equal(masks.affine, affine)
    assert masks.meta["filename_or_obj"] == "case_01.nii.gz"
    assert not isinstance(class_ids, MetaTensor)


def test_classes_none_treats_every_nonzero_value_as_class():
    label = torch.zeros(1, 8, 8)
    label[0, 0, 0], label[0, 4, 4], label[0, 7, 7] = 7, 2, 12
    _, class_ids = GenerateAttentionMasks()(label)
    assert class_ids.tolist() == [2, 7, 12]


def test_declared_classes_absent_from_patch_produce_no_mask():
    masks, class_ids = GenerateAttentionMasks(classes=[1, 2, 3, 4])(_label_2d())
    assert class_ids.tolist() == [1, 3]
    assert masks.shape[0] == 2


def test_min_voxels_drops_small_objects():
    label = torch.zeros(1, 8, 8, 8)
    label[0, 0, 0, :3] = 1  # 3 voxels
    label[0, 4:6, 4:6, 4:7] = 2  # 12 voxels
    assert GenerateAttentionMasks(min_voxels=3)(label)[1].tolist() == [1, 2]
    assert GenerateAttentionMasks(min_voxels=4)(label)[1].tolist() == [2]
    assert GenerateAttentionMasks(min_voxels=13)(label)[1].tolist() == []


OBJECT_MASK_MODES = [m for m in MASK_MODES if m != "whole"]  # one mask per organ present


@pytest.mark.parametrize("mask_mode", OBJECT_MASK_MODES)
@pytest.mark.parametrize("spatial_shape", [(12, 12), (8, 8, 8)])
def test_empty_foreground_gives_zero_objects(mask_mode, spatial_shape):
    masks, class_ids = GenerateAttentionMasks(mask_mode=mask_mode, classes=[1, 2])(torch.zeros(1, *spatial_shape))
    assert masks.shape == (0, *spatial_shape)
    assert class_ids.shape == (0,)
    assert class_ids.dtype == torch.int64


@pytest.mark.parametrize("spatial_shape", [(12, 12), (8, 8, 8)])
@pytest.mark.parametrize("foreground", [False, True])
def test_whole_mode_gives_one_whole_view_mask_of_class_zero(spatial_shape, foreground):
    label = torch.zeros(1, *spatial_shape)
    label[(0, *[slice(2, 5)] * len(spatial_shape))] = 2 if foreground else 0
    masks, class_ids = GenerateAttentionMasks(mask_mode="whole", classes=[1, 2])(label)
    assert torch.equal(masks, torch.ones(1, *spatial_shape))
    assert class_ids.tolist() == [0] and class_ids.dtype == torch.int64


def test_whole_mode_still_checks_the_label():
    with pytest.raises(ValueError, match="integers"):
        GenerateAttentionMasks(mask_mode="whole")(torch.full((1, 4, 4, 4), 0.5))


# ---------------------------------------------------------------- coarse mask modes


def test_bbox_is_the_box_grown_by_margin():
    masks, _ = GenerateAttentionMasks(mask_mode="bbox", bbox_margin=1)(_label_3d())
    expected = torch.zeros(2, 16, 16, 16)
    expected[0, 1:7, 1:7, 1:7] = 1
    expected[1, 8:13, 7:13, 6:13] = 1
    assert torch.equal(masks, expected)


def test_bbox_contains_exact_mask_of_an_irregular_object():
    label = torch.zeros(1, 16, 16)
    label[0, 3, 3:10] = 1  # an "L" shape: its box is much larger than the object
    label[0, 3:12, 9] = 1
    exact, _ = GenerateAttentionMasks()(label)
    box, _ = GenerateAttentionMasks(mask_mode="bbox", bbox_margin=0)(label)
    assert torch.all(box >= exact)
    assert box.sum() == 9 * 7  # rows 3..11, columns 3..9


def test_bbox_is_clipped_at_the_image_border():
    label = torch.zeros(1, 10, 10)
    label[0, 0:2, 8:10] = 4
    masks, _ = GenerateAttentionMasks(mask_mode="bbox", bbox_margin=3)(label)
    expected = torch.zeros(1, 10, 10)
    expected[0, 0:5, 5:10] = 1
    assert torch.equal(masks, expected)


@pytest.mark.parametrize(
    "spatial_shape, radius, expected_volume",
    [((15, 15), 2, 13), ((15, 15), 1, 5), ((11, 11, 11), 1, 7), ((11, 11, 11), 2, 33)],
)
def test_dilate_single_voxel_gives_euclidean_ball(spatial_shape, radius, expected_volume):
    label = torch.zeros(1, *spatial_shape)
    centre = tuple(s // 2 for s in spatial_shape)
    label[(0, *centre)] = 1
    masks, _ = GenerateAttentionMasks(mask_mode="dilate", dilate_radius=radius)(label)
    assert masks.sum() == expected_volume


def test_dilate_grows_by_exactly_the_radius_along_an_axis():
    label = torch.zeros(1, 20, 20)
    label[0, 8:12, 8:12] = 1
    masks, _ = GenerateAttentionMasks(mask_mode="dilate", dilate_radius=2)(label)
    row = masks[0, 10]  # a line through the object: columns 8..11 plus 2 on each side
    assert torch.equal(torch.nonzero(row)[:, 0], torch.arange(6, 14))
    assert torch.all(masks >= (label == 1).float())
    assert set(masks.unique().tolist()) == {0.0, 1.0}


def test_dilate_radius_zero_equals_exact():
    exact, _ = GenerateAttentionMasks()(_label_3d())
    dilated, _ = GenerateAttentionMasks(mask_mode="dilate", dilate_radius=0)(_label_3d())
    assert torch.equal(exact, dilated)


@pytest.mark.parametrize("make_label", [_label_2d, _label_3d])
def test_blur_is_in_unit_interval_with_max_one(make_label):
    label = make_label()
    masks, _ = GenerateAttentionMasks(mask_mode="blur", blur_sigma=1.5)(label)
    exact, _ = GenerateAttentionMasks()(label)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert torch.allclose(masks.flatten(1).amax(dim=1), torch.ones(2))
    # coarse: it leaks outside the object, and it is not binary
    assert torch.all(masks[exact == 0].amax() > 0.01)
    assert masks.unique().numel() > 2


# ---------------------------------------------------------------- max_objects randomness


def test_max_objects_keeps_a_sorted_subset():
    transform = GenerateAttentionMasks(max_objects=2).set_random_state(seed=3)
    label = _label_many_classes()
    for _ in range(5):
        masks, class_ids = transform(label)
        ids = class_ids.tolist()
        assert len(ids) == 2 and ids == sorted(ids) and set(ids) <= {1, 2, 3, 4, 5}
        for mask, k in zip(masks, ids):
            assert torch.equal(mask, (label[0] == k).float())


def test_max_objects_is_reproducible_with_set_random_state():
    label = _label_many_classes()
    first = GenerateAttentionMasks(max_objects=3).set_random_state(seed=11)
    second = GenerateAttentionMasks(max_objects=3).set_random_state(seed=11)
    draws_first = [first(label)[1].tolist() for _ in range(6)]
    draws_second = [second(label)[1].tolist() for _ in range(6)]
    assert draws_first == draws_second
    assert len({tuple(d) for d in draws_first}) > 1  # the subset does vary from call to call


def test_max_objects_above_count_keeps_everything():
    _, class_ids = GenerateAttentionMasks(max_objects=10)(_label_many_classes())
    assert class_ids.tolist() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask_mode": "sphere"}, "sphere"),
        ({"min_voxels": 0}, "min_voxels"),
        ({"max_objects": 0}, "max_objects"),
        ({"dilate_radius": -1}, "dilate_radius"),
        ({"dilate_radius": 1.5}, "dilate_radius"),
        ({"blur_sigma": 0.0}, "blur_sigma"),
        ({"bbox_margin": -2}, "bbox_margin"),
        ({"classes": [0, 1]}, "background"),
        ({"classes": [1, 2, 2]}, "distinct"),
        ({"classes": [1, 2.5]}, "2.5"),
    ],
)
def test_invalid_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GenerateAttentionMasks(**kwargs)


def test_label_value_outside_declared_classes_raises_naming_it():
    label = _label_2d()
    label[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"\[9\]"):
        GenerateAttentionMasks(classes=[1, 3])(label)


def test_non_integer_label_raises_naming_the_value():
    label = _label_2d()
    label[0, 0, 0] = 1.5
    with pytest.raises(ValueError, match="1.5"):
        GenerateAttentionMasks()(label)


def test_nan_label_raises():
    label = _label_2d()
    label[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        GenerateAttentionMasks()(label)


@pytest.mark.parametrize("shape", [(2, 8, 8), (8, 8), (1, 8), (3, 8, 8, 8), (1, 4, 4, 4, 4)])
def test_wrong_label_shape_raises_with_the_shape(shape):
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        GenerateAttentionMasks()(torch.zeros(shape))


# ---------------------------------------------------------------- dictionary twin


@pytest.mark.parametrize("mask_mode", MASK_MODES)
@pytest.mark.parametrize("make_label", [_label_2d, _label_3d])
def test_dict_twin_equals_array_version(mask_mode, make_label):
    label = make_label()
    image = torch.rand(label.shape)
    out = GenerateAttentionMasksd(mask_mode=mask_mode)({"image": image, "label": label})
    masks, class_ids = GenerateAttentionMasks(mask_mode=mask_mode)(label)
    assert torch.equal(out["masks"], masks)
    assert torch.equal(out["class_ids"], class_ids)
    assert out["object_ids"].dtype == torch.int64
    assert out["object_ids"].tolist() == list(range(len(class_ids)))
    assert out["image"] is image and out["label"] is label


def test_dict_writes_to_custom_keys():
    out = GenerateAttentionMasksd(
        keys="seg", masks_key="a", class_ids_key="y", object_ids_key="o", image_key="img"
    )({"img": torch.rand(1, 16, 16), "seg": _label_2d()})
    assert out["a"].shape == (2, 16, 16) and out["y"].tolist() == [1, 3] and out["o"].tolist() == [0, 1]


def test_dict_empty_foreground_gives_empty_object_ids():
    out = GenerateAttentionMasksd()({"image": torch.rand(1, 8, 8, 8), "label": torch.zeros(1, 8, 8, 8)})
    assert out["masks"].shape == (0, 8, 8, 8)
    assert out["class_ids"].shape == (0,) and out["object_ids"].shape == (0,)


def test_dict_image_label_shape_mismatch_raises_naming_both():
    with pytest.raises(ValueError, match=r"\(16, 15\).*\(16, 16\)"):
        GenerateAttentionMasksd()({"image": torch.rand(1, 16, 15), "label": _label_2d()})


def test_dict_without_image_is_accepted():
    out = GenerateAttentionMasksd(image_key="image")({"label": _label_2d()})
    assert out["class_ids"].tolist() == [1, 3]


def test_dict_missing_label_allowed_only_when_asked():
    with pytest.raises(KeyError):
        GenerateAttentionMasksd()({"image": torch.rand(1, 8, 8)})
    out = GenerateAttentionMasksd(allow_missing_keys=True)({"image": torch.rand(1, 8, 8)})
    assert "masks" not in out


def test_dict_accepts_a_single_label_key_only():
    with pytest.raises(ValueError, match="exactly one"):
        GenerateAttentionMasksd(keys=["label", "label2"])


def test_dict_set_random_state_propagates_to_array_transform():
    label = _label_many_classes()
    twin = GenerateAttentionMasksd(max_objects=2).set_random_state(seed=5)
    array = GenerateAttentionMasks(max_objects=2).set_random_state(seed=5)
    for _ in range(4):
        assert twin({"label": label})["class_ids"].tolist() == array(label)[1].tolist()


def test_dict_metatensor_affine_preserved():
    affine = torch.diag(torch.tensor([1.5, 1.5, 3.0, 1.0], dtype=torch.float64))
    data = {
        "image": MetaTensor(torch.rand(1, 16, 16, 16), affine=affine),
        "label": MetaTensor(_label_3d(), affine=affine),
    }
    out = GenerateAttentionMasksd(mask_mode="bbox")(data)
    assert isinstance(out["masks"], MetaTensor)
    assert torch.equal(out["masks"].affine, affine)


# ---------------------------------------------------------------- RandMultiViewd


def _sample_3d() -> dict:
    """An image that is a known linear function of the object masks, so geometry can be compared exactly."""
    label = _label_3d()
    image = 100.0 * (label == 2).float() + 200.0 * (label == 5).float()
    return GenerateAttentionMasksd()({"image": image, "label": label})


def _view_pipeline() -> Compose:
    return Compose(
        [
            RandSpatialCropd(keys=["image", "masks"], roi_size=(12, 12, 12), random_size=False),
            RandAffined(
                keys=["image", "masks"],
                prob=1.0,
                rotate_range=(0.4, 0.4, 0.4),
                scale_range=(0.1, 0.1, 0.1),
                mode=("bilinear", "bilinear"),
                padding_mode="zeros",
            ),
            RandFlipd(keys=["image", "masks"], prob=0.5, spatial_axis=0),
            CopyItemsd(keys=["image", "masks"], names=["image_geometry", "masks_geometry"]),
            RandScaleIntensityd(keys=["image"], factors=0.2, prob=1.0),
            RandGaussianNoised(keys=["image"], prob=1.0, std=5.0),
        ]
    )


def test_multiview_returns_tagged_views():
    views = RandMultiViewd(_view_pipeline(), num_views=3).set_random_state(seed=0)(_sample_3d())
    assert isinstance(views, list) and len(views) == 3
    assert [v["view_id"] for v in views] == [0, 1, 2]
    assert all(v["image"].shape == (1, 12, 12, 12) for v in views)


def test_multiview_masks_move_exactly_as_the_image():
    views = RandMultiViewd(_view_pipeline()).set_random_state(seed=1)(_sample_3d())
    for view in views:
        masks = view["masks_geometry"]
        expected_image = 100.0 * masks[0] + 200.0 * masks[1]  # resampling is linear: same params, same result
        assert torch.allclose(view["image_geometry"][0], expected_image, atol=1e-3)
        assert masks.sum() > 0


def test_multiview_views_differ():
    view0, view1 = RandMultiViewd(_view_pipeline()).set_random_state(seed=2)(_sample_3d())
    assert not torch.allclose(view0["image_geometry"], view1["image_geometry"])
    assert not torch.allclose(view0["masks"], view1["masks"])


def test_multiview_intensity_transforms_do_not_touch_masks():
    for view in RandMultiViewd(_view_pipeline()).set_random_state(seed=3)(_sample_3d()):
        assert not torch.allclose(view["image"], view["image_geometry"])
        assert torch.equal(view["masks"], view["masks_geometry"])
        assert view["masks"].min() >= -1e-6 and view["masks"].max() <= 1 + 1e-6


def test_multiview_is_reproducible_with_set_random_state():
    first = RandMultiViewd(_view_pipeline()).set_random_state(seed=4)(_sample_3d())
    second = RandMultiViewd(_view_pipeline()).set_random_state(seed=4)(_sample_3d())
    for a, b in zip(first, second):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])


def test_multiview_does_not_mutate_the_input():
    def add_in_place(d):
        d["image"].add_(1.0)
        return d

    sample = {"image": torch.zeros(1, 4, 4), "name": "case"}
    views = RandMultiViewd(add_in_place, num_views=2)(sample)
    assert torch.equal(sample["image"], torch.zeros(1, 4, 4))
    assert all(torch.equal(v["image"], torch.ones(1, 4, 4)) for v in views)
    assert "view_id" not in sample


def test_multiview_tags_every_item_of_a_list_returning_transform():
    crops = RandSpatialCropSamplesd(keys=["image", "masks"], roi_size=(8, 8, 8), num_samples=2, random_size=False)
    views = RandMultiViewd(crops, num_views=2).set_random_state(seed=0)(_sample_3d())
    assert [v["view_id"] for v in views] == [0, 0, 1, 1]


def test_multiview_rejects_non_dict_output():
    with pytest.raises(ValueError, match="dict"):
        RandMultiViewd(lambda d: d["image"])({"image": torch.zeros(1, 4, 4)})


@pytest.mark.parametrize("kwargs", [{"num_views": 0}, {"num_views": 1.5}, {"transform": "not callable"}])
def test_multiview_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        RandMultiViewd(**{"transform": lambda d: d, **kwargs})


# ---------------------------------------------------------------- DropEmptyMasks


def _masks_with_volumes(volumes: list[float]) -> torch.Tensor:
    masks = torch.zeros(len(volumes), 4, 4)
    for k, v in enumerate(volumes):
        masks[k, 0, 0] = v
    return masks


def test_drop_empty_masks_filters_aligned_arrays_identically():
    masks = _masks_with_volumes([5.0, 0.0, 0.5, 2.0])
    class_ids, object_ids = torch.tensor([1, 2, 3, 4]), torch.arange(4)
    kept_masks, kept_classes, kept_objects = DropEmptyMasks()(masks, class_ids, object_ids)
    assert torch.equal(kept_masks, masks[[0, 3]])
    assert kept_classes.tolist() == [1, 4] and kept_objects.tolist() == [0, 3]


def test_drop_empty_masks_threshold_is_inclusive():
    (kept,) = DropEmptyMasks(min_voxels=2.0)(_masks_with_volumes([2.0, 1.99]))
    assert kept.shape[0] == 1


def test_drop_empty_masks_numpy():
    kept_masks, kept_ids = DropEmptyMasks()(_masks_with_volumes([0.0, 3.0]).numpy(), np.array([7, 8]))
    assert isinstance(kept_masks, np.ndarray) and kept_masks.shape == (1, 4, 4)
    assert kept_ids.tolist() == [8]


def test_drop_empty_masks_handles_zero_objects():
    kept_masks, kept_ids = DropEmptyMasks()(torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.long))
    assert kept_masks.shape == (0, 4, 4) and kept_ids.shape == (0,)


def test_drop_empty_masks_misaligned_raises_with_shapes():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        DropEmptyMasks()(_masks_with_volumes([1.0, 1.0]), torch.arange(3))


def test_drop_empty_masks_invalid_threshold_raises():
    with pytest.raises(ValueError, match="-1"):
        DropEmptyMasks(min_voxels=-1)


def test_drop_empty_masksd_keeps_per_object_keys_aligned():
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0], dtype=torch.float64))
    data = {
        "masks": MetaTensor(_masks_with_volumes([0.0, 4.0, 0.2]), affine=affine),
        "class_ids": torch.tensor([3, 6, 9]),
        "object_ids": torch.arange(3),
        "image": torch.rand(1, 4, 4),
    }
    out = DropEmptyMasksd()(data)
    assert out["class_ids"].tolist() == [6] and out["object_ids"].tolist() == [1]
    assert torch.equal(out["masks"].as_tensor(), data["masks"].as_tensor()[[1]])
    assert torch.equal(out["masks"].affine, data["masks"].affine)
    assert out["image"] is data["image"]


def test_drop_empty_masksd_after_crop_removes_objects_outside_the_view():
    sample = _sample_3d()  # class 2 in [2, 6)^3, class 5 in [9, 12) x [8, 12) x [7, 12)
    crop = Compose([CopyItemsd(keys="masks", names="masks_full"), DropEmptyMasksd()])
    cropped = dict(sample, masks=sample["masks"][:, :8, :8, :8])
    out = crop(cropped)
    assert out["class_ids"].tolist() == [2] and out["object_ids"].tolist() == [0]
    assert out["masks"].shape == (1, 8, 8, 8)


def test_drop_empty_masksd_missing_keys():
    with pytest.raises(KeyError):
        DropEmptyMasksd()({"masks": _masks_with_volumes([1.0])})
    partial = {"masks": _masks_with_volumes([1.0, 0.0]), "class_ids": torch.tensor([1, 2])}  # no object_ids
    out = DropEmptyMasksd(allow_missing_keys=True)(partial)
    assert out["class_ids"].tolist() == [1] and out["masks"].shape[0] == 1
    assert DropEmptyMasksd(allow_missing_keys=True)({"image": torch.zeros(1)}).keys() == {"image"}
