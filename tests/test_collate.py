"""Tests for semcl_components.collate: batches with a variable number of objects per item."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, RandFlipd, RandSpatialCropd

from semcl_components.collate import ObjectListCollate, object_list_collate
from semcl_components.transforms import DropEmptyMasksd, GenerateAttentionMasksd, RandMultiViewd


def _item(num_objects: int, shape: tuple[int, ...] = (8, 8, 8), first_class: int = 1) -> dict:
    """One sample with `num_objects` objects: image (1, *shape), masks (K, *shape), ids (K,)."""
    return {
        "image": torch.rand(1, *shape),
        "masks": torch.rand(num_objects, *shape),
        "class_ids": torch.arange(first_class, first_class + num_objects),
        "object_ids": torch.arange(num_objects),
        "name": f"case_{num_objects}",
    }


def test_variable_object_counts_become_lists():
    batch = object_list_collate([_item(2), _item(0), _item(3)])
    assert batch["image"].shape == (3, 1, 8, 8, 8)
    assert [m.shape[0] for m in batch["masks"]] == [2, 0, 3]
    assert [c.tolist() for c in batch["class_ids"]] == [[1, 2], [], [1, 2, 3]]
    assert [o.tolist() for o in batch["object_ids"]] == [[0, 1], [], [0, 1, 2]]
    assert batch["name"] == ["case_2", "case_0", "case_3"]


def test_plain_dicts_get_their_own_sample_index():
    batch = object_list_collate([_item(1), _item(2)])
    assert batch["sample_index"].dtype == torch.int64
    assert batch["sample_index"].tolist() == [0, 1]


def test_views_are_flattened_in_order_and_share_sample_index():
    sample_a = [dict(_item(2), view_id=0), dict(_item(1), view_id=1)]
    sample_b = [dict(_item(3), view_id=0), dict(_item(0), view_id=1)]
    batch = object_list_collate([sample_a, sample_b])
    assert batch["image"].shape == (4, 1, 8, 8, 8)
    assert batch["sample_index"].tolist() == [0, 0, 1, 1]
    assert batch["view_id"].tolist() == [0, 1, 0, 1]
    assert [m.shape[0] for m in batch["masks"]] == [2, 1, 3, 0]


def test_mixed_dicts_and_view_lists():
    batch = object_list_collate([_item(1), [_item(2), _item(2)]])
    assert batch["sample_index"].tolist() == [0, 1, 1]


def test_metatensor_meta_is_kept():
    affine = torch.diag(torch.tensor([0.7, 0.7, 3.0, 1.0], dtype=torch.float64))
    items = [dict(_item(1), image=MetaTensor(torch.rand(1, 8, 8, 8), affine=affine)) for _ in range(2)]
    batch = object_list_collate(items)
    assert isinstance(batch["image"], MetaTensor)
    assert batch["image"].affine.shape == (2, 4, 4)
    assert torch.equal(batch["image"].affine[1], affine)


def test_numpy_object_entries_become_tensors():
    item = {
        "image": np.zeros((1, 4, 4), np.float32),
        "masks": np.ones((2, 4, 4), np.float32),
        "class_ids": np.array([1, 2]),
    }
    batch = object_list_collate([item, item])
    assert all(isinstance(m, torch.Tensor) for m in batch["masks"] + batch["class_ids"])
    assert "object_ids" not in batch


def test_custom_object_keys():
    batch = object_list_collate([_item(2), _item(2)], object_keys=("masks",))
    assert isinstance(batch["masks"], list)
    assert batch["class_ids"].shape == (2, 2)
    with pytest.raises(RuntimeError):  # class_ids of different lengths are now stacked, which must fail
        object_list_collate([_item(2), _item(1)], object_keys=("masks", "object_ids"))


@pytest.mark.parametrize(
    "batch, match",
    [
        ([], "empty"),
        ([torch.zeros(2)], "Tensor"),
        ([dict(_item(1), sample_index=3)], "sample_index"),
        ([_item(1), {k: v for k, v in _item(1).items() if k != "masks"}], "masks"),
    ],
)
def test_invalid_batches_raise(batch, match):
    with pytest.raises(ValueError, match=match):
        object_list_collate(batch)


def test_collate_callable_is_picklable_and_equivalent():
    collate = pickle.loads(pickle.dumps(ObjectListCollate(object_keys=("masks", "class_ids"))))
    assert collate.object_keys == ("masks", "class_ids")
    batch = collate([_item(2), _item(2)])
    assert isinstance(batch["class_ids"], list)
    assert batch["object_ids"].shape == (2, 2)  # not an object key any more: stacked
    assert "ObjectListCollate" in repr(collate)


def test_dataloader_with_two_view_pipeline():
    def sample(seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        label = torch.zeros(1, 12, 12, 12)
        label[0, 1:5, 1:5, 1:5] = 1
        label[0, 6 : 6 + seed + 2, 6:10, 6:10] = 2 + seed
        return {"image": torch.rand(1, 12, 12, 12, generator=g), "label": label}

    view = Compose(
        [
            RandSpatialCropd(keys=["image", "masks", "label"], roi_size=(10, 10, 10), random_size=False),
            RandFlipd(keys=["image", "masks", "label"], prob=0.5, spatial_axis=1),
            DropEmptyMasksd(),
        ]
    )
    transform = Compose([GenerateAttentionMasksd(), RandMultiViewd(view, num_views=2)])
    dataset = Dataset([sample(0), sample(1), sample(2)], transform)
    loader = DataLoader(dataset, batch_size=3, collate_fn=ObjectListCollate())
    batch = next(iter(loader))
    assert batch["image"].shape == (6, 1, 10, 10, 10)
    assert batch["sample_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch["view_id"].tolist() == [0, 1, 0, 1, 0, 1]
    assert len(batch["masks"]) == 6
    for masks, class_ids, object_ids in zip(batch["masks"], batch["class_ids"], batch["object_ids"]):
        assert masks.shape[0] == class_ids.shape[0] == object_ids.shape[0]
        assert masks.shape[1:] == (10, 10, 10)
    second_class = [int(c[-1]) for c in batch["class_ids"][::2]]
    assert second_class == [2, 3, 4]


def test_crops_with_views_each_get_their_own_sample_index():
    """A volume giving two crops (num_samples), each with two views: [[v0, v1], [v0, v1]] per dataset item."""
    volume_a = [[_item(1), _item(1)], [_item(2), _item(2)]]
    volume_b = [[_item(3), _item(3)]]
    batch = object_list_collate([volume_a, volume_b])
    assert batch["sample_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert [m.shape[0] for m in batch["masks"]] == [1, 1, 2, 2, 3, 3]
