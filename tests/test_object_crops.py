"""Organ-centred crops: one per object, isotropic in mm, scale-normalised, and pasted back exactly."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from semcl_components.transforms import ObjectBox, ObjectCrops, ObjectCropsd, crop_to_box, object_box, paste_from_box


def _labels(shape=(40, 40, 30)) -> torch.Tensor:
    """A small organ (4: gallbladder-like, 4 x 5 x 3) and a large one (5: liver-like, 20 x 20 x 17)."""
    label = torch.zeros(1, *shape)
    label[0, 5:9, 5:10, 5:8] = 4
    label[0, 15:35, 10:30, 8:25] = 5
    return label


def test_box_is_the_bounding_box_grown_by_the_margin_and_isotropic_in_mm():
    mask = torch.zeros(40, 40, 30, dtype=torch.bool)
    mask[10:20, 5:11, 4:8] = True  # 10 x 6 x 4 voxels
    box = object_box(mask, crop_size=(32, 32, 16), spacing=(1.0, 2.0, 3.0), margin=0.25)
    assert box.centre == (14.5, 7.5, 5.5)
    # sides in mm: 10, 12, 12 -> largest 12, grown to 18 mm; the crop is 32 x 32 x 16: 18 x 18 x 9 mm
    assert box.extent == pytest.approx((18.0, 9.0, 3.0))
    assert object_box(mask, (32, 32, 16), (1.0, 2.0, 3.0), margin=0.25, min_extent_mm=40.0).extent[0] == pytest.approx(
        40
    )
    with pytest.raises(ValueError, match="non-empty"):
        object_box(torch.zeros(8, 8, 8), (8, 8, 8))


def test_box_survives_its_tensor_form():
    box = ObjectBox((1.5, 2.0, 3.0), (10.0, 11.0, 12.5))
    assert ObjectBox.from_tensor(box.as_tensor()) == box


def test_paste_inverts_crop_when_the_crop_is_finer_than_the_volume():
    label = _labels()
    mask = (label == 4).float()
    box = object_box(mask[0], crop_size=(24, 24, 24), margin=0.5)  # 4-5 voxels magnified to 24
    crop = crop_to_box(mask, box, (24, 24, 24), mode="nearest", padding_mode="zeros")
    back, covered = paste_from_box(crop, box, mask.shape[1:])
    assert torch.equal(back[0] > 0.5, mask[0] > 0.5)
    assert covered[mask[0] > 0].all() and not covered.all()  # the organ lies inside, the far corner outside


def test_small_and_large_organs_fill_their_crops_alike():
    """Scale normalisation: the gallbladder-like and liver-like organs occupy similar shares of their crops, although
    their volumes differ 100-fold."""
    crops = ObjectCrops(crop_size=(32, 32, 32), margin=0.25)(torch.rand(1, 40, 40, 30), _labels())
    assert [k for _, _, k, _ in crops] == [4, 5]
    assert (_labels() == 5).sum() > 100 * (_labels() == 4).sum()
    shares = [float(mask.mean()) for _, mask, _, _ in crops]
    assert 0.5 < shares[0] / shares[1] < 2.0 and all(0.05 < s < 0.6 for s in shares)


def test_dict_crops_one_sample_per_object_with_its_masks_and_class():
    label = _labels()
    image = MetaTensor(torch.rand(1, 40, 40, 30), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    data = {"image": image, "prior": label, "label": label, "case": "x"}
    samples = ObjectCropsd(keys="image", prior_key="prior", label_keys=["label"], crop_size=(16, 16, 16))(data)
    assert [int(s["class_ids"]) for s in samples] == [4, 5]
    for sample in samples:
        assert sample["image"].shape == (1, 16, 16, 16) and sample["case"] == "x"
        assert set(torch.unique(sample["prior"]).tolist()) == {0.0, 1.0}  # the object's mask, not the label map
        assert torch.equal(sample["label"], sample["prior"])  # prior and label agree here
    # the spacing comes from the image's affine: x and y at 2 mm, z at 3 mm -> fewer z voxels for the same mm
    extent = ObjectBox.from_tensor(samples[1]["object_box"]).extent
    assert extent[0] == pytest.approx(extent[2] * 1.5)


def test_objects_below_min_voxels_or_outside_classes_get_no_crop():
    label = _labels()
    assert ObjectCrops((8, 8, 8), min_voxels=100).objects(label) == [5]
    assert ObjectCrops((8, 8, 8), classes=[4]).objects(label) == [4]
    assert (
        ObjectCropsd(keys="image", crop_size=(8, 8, 8))(
            {"image": torch.rand(1, 8, 8, 8), "prior": torch.zeros(1, 8, 8, 8)}
        )
        == []
    )
    with pytest.raises(ValueError, match="spatial shape"):
        ObjectCrops((8, 8, 8))(torch.rand(1, 8, 8, 8), torch.zeros(1, 8, 8, 9))


def test_crops_of_a_meta_tensor_keep_their_place_in_the_world():
    from semcl_components.transforms import crop_to_box

    affine = torch.tensor([[2.0, 0, 0, -40], [0, 2.0, 0, -30], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    image = MetaTensor(torch.rand(1, 40, 40, 30), affine=affine)
    box = object_box(_labels()[0] == 5, (16, 16, 16), (2.0, 2.0, 3.0))
    crop = crop_to_box(image, box, (16, 16, 16))
    centre = crop.affine.double() @ torch.tensor([7.5, 7.5, 7.5, 1.0], dtype=torch.float64)  # the crop's centre
    assert torch.allclose(centre, affine.double() @ torch.tensor([*box.centre, 1.0], dtype=torch.float64))
    assert torch.allclose(crop.pixdim.double(), torch.full((3,), box.extent[0] * 2.0 / 16, dtype=torch.float64))


def test_crops_as_contrastive_samples_one_object_each():
    data = {"image": torch.rand(1, 40, 40, 30), "label": _labels()}
    samples = ObjectCropsd(keys="image", prior_key="label", mask_key="masks", object_ids_key="object_ids",
                           crop_size=(16, 16, 16))(data)
    for sample in samples:
        assert sample["masks"].shape == (1, 16, 16, 16) and sample["masks"].max() == 1.0
        assert sample["object_ids"].tolist() == [0] and sample["class_ids"].shape == (1,)
        assert torch.equal(sample["label"], data["label"])  # the prior itself is left as it was
