"""The resolution floor (docs/PROTOCOL_v3.md, sections 2 and 11, M7): a label map taken to stage 1's grid and back
nearest neighbour, on boxes of known geometry, against the bundle's own reading of labels, and the command on
v3_tiny's data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from semcl_benchmark.datasets import BenchmarkData
from semcl_benchmark.fine_grid import case_dice, nearest_onto
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.resolution_floor import coarse_label, floor_label, main
from semcl_benchmark.run_records import case_id
from semcl_tools.repository import CONFIGS

TINY = load_protocol().sizes["v3_tiny"]


def label_map(shape, spacing: float, origin=(-17.0, 4.5, 30.25)) -> MetaTensor:
    """An empty label map ``(1, *shape)``, RAS, ``spacing`` mm, at ``origin``."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = origin
    return MetaTensor(torch.zeros(1, *shape), affine=torch.as_tensor(affine))


def round_trip_axis(lo: int, hi: int, ratio: int, n: int) -> np.ndarray:
    """Along one axis of ``n`` fine voxels, the voxels an interval ``[lo, hi]`` covers after the round trip at an odd
    ``ratio`` (no fine voxel midway between two coarse centres): coarse voxel ``k`` sits on fine voxel ``ratio k``
    and holds its class; fine voxel ``i`` takes the coarse voxel nearest to ``i / ratio``."""
    coarse_in = {k for k in range(n) if lo <= ratio * k <= hi}
    return np.array([round(i / ratio) in coarse_in for i in range(n)])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_boxes_at_three_times_the_spacing_keep_exactly_their_whole_coarse_voxels():
    shape, ratio = (24, 12, 12), 3
    label = label_map(shape, 1.0)
    boxes = {  # organ: (x, y, z) inclusive fine intervals
        1: ((2, 7), (2, 7), (2, 7)),  # coarse voxels 1..2 on every axis: fine [3k - 1, 3k + 1]
        2: ((12, 16), (2, 7), (2, 7)),  # x [12, 16]: one fine voxel short of coarse voxels 4..5, [11, 16]
        3: ((20, 20), (2, 7), (2, 7)),  # one voxel thick, not under a coarse centre (20 = 3 x 6 + 2)
    }
    for organ, ((x0, x1), (y0, y1), (z0, z1)) in boxes.items():
        label[0, x0:x1 + 1, y0:y1 + 1, z0:z1 + 1] = organ
    floor = floor_label(label, [3.0] * 3)
    assert floor.shape == label.shape and torch.allclose(floor.affine, label.affine)
    scores = case_dice(floor, label, num_classes=5)
    expected = []
    for organ, intervals in boxes.items():
        truth = label[0].numpy() == organ
        kept = np.einsum("i,j,k->ijk", *(round_trip_axis(lo, hi, ratio, n) for (lo, hi), n in zip(intervals, shape)))
        assert np.array_equal(floor[0].numpy() == organ, kept)
        expected.append(dice(kept, truth))
    assert expected[0] == 1.0  # a box made of whole coarse voxels survives exactly
    assert expected[1] == pytest.approx(2 * 5 / (5 + 6))  # x: 5 fine voxels come back as 6, y and z exact
    assert expected[2] == 0.0  # no coarse centre on it: the organ disappears
    assert scores == pytest.approx(expected + [None])  # organ 4 is absent: left out


def test_at_twice_the_spacing_coarse_centres_sit_on_every_other_fine_voxel():
    """v3's grids (2.8125 mm and 5.625 mm): whatever the tie rule between two coarse centres, every fine voxel under
    a coarse centre keeps its class, a one-voxel organ between them disappears, and a second round trip changes
    nothing."""
    generator = torch.Generator().manual_seed(0)
    label = label_map((20, 14, 12), 2.8125, origin=(-174.375, -100.0, 12.5))
    label[0] = torch.randint(0, 3, (20, 14, 12), generator=generator).float()
    label[0, 7] = 3  # an organ one voxel thick, at an odd index: between two coarse centres
    floor = floor_label(label, [5.625] * 3)
    assert torch.equal(floor[0, ::2, ::2, ::2], label[0, ::2, ::2, ::2])
    assert not (floor == 3).any()
    assert case_dice(floor, label, num_classes=4)[2] == 0.0
    assert torch.equal(floor_label(floor, [5.625] * 3), floor)


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory):
    """v3_tiny's data and first seed's datalist (about 8 s)."""
    work = tmp_path_factory.mktemp("v3_tiny")
    BenchmarkData(TINY, work).prepare([TINY.seeds[0]])
    return work


def test_the_round_trip_is_the_bundles_reading_of_labels_brought_back(tiny_work):
    """Stage 1's labels as train.yaml's validation pipeline reads them at ``stage1_pixdim`` (``Spacingd`` nearest,
    padding to ``roi_size``), taken onto each label file's grid as the stage-1 scoring does, are the module's round
    trip; unpadded, the ties between coarse centres come back otherwise (see the module)."""
    from monai.bundle import ConfigParser
    from monai.transforms import LoadImage

    data = BenchmarkData(TINY, tiny_work)
    pixdim, roi_size = [TINY.stage1_pixdim] * 3, TINY.finetune["roi_size"]
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(CONFIGS.parent), "dataset_dir": str(data.folder), "pixdim": pixdim,
                   "roi_size": roi_size, "data_list_file_path": str(data.datalist_file(TINY.seeds[0])),
                   "val_key": "test"})
    parser["validate#dataset#progress"] = False
    load = LoadImage(image_only=True, ensure_channel_first=True)
    cases = list(parser.get_parsed_content("validate#dataset"))
    assert len(cases) == TINY.draws["test"]
    unpadded_differs = []
    for case in cases:
        fine = load(case["label"].meta["filename_or_obj"])
        assert case["label"].shape[1:] != coarse_label(fine, pixdim).shape[1:]  # the bundle padded it
        stage1 = nearest_onto(case["label"], fine)
        assert torch.equal(stage1, floor_label(fine, pixdim, roi_size))
        unpadded_differs.append(not torch.equal(stage1, floor_label(fine, pixdim)))
    assert any(unpadded_differs)


def test_the_command_scores_the_test_set_of_v3_tiny(tiny_work, tmp_path, capsys):
    out = tmp_path / "floor.json"
    assert main(["--size", "v3_tiny", "--workdir", str(tiny_work), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = json.loads(out.read_text(encoding="utf-8"))
    data = BenchmarkData(TINY, tiny_work)
    test = [case_id(entry["label"]) for entry in data.datalist(TINY.seeds[0])["test"]]
    assert result["test"]["cases"] == test and len(result["test"]["contrast_phases"]) == len(test)
    assert [line.split()[2].rstrip(":") for line in lines if "/" in line.split()[1]] == test  # a line per case
    assert result["grids"] == {"coarse_pixdim": [22.5] * 3, "pad_size": [16] * 3, "scoring_pixdim": [11.25] * 3}
    assert result["data"]["preset_fingerprint"] and result["code_version"] and result["machine"]["cpu"]
    dice = np.array([[np.nan if v is None else v for v in row] for row in result["test"]["dice"]])
    assert np.nanmin(dice) >= 0.0 and np.nanmax(dice) <= 1.0
    assert np.nanmean(dice) < 1.0  # 11.25 mm labels lose detail at 22.5 mm
    case_means = np.nanmean(dice, axis=1)
    assert result["case_mean_dice"] == pytest.approx(list(case_means), abs=1e-6)
    assert result["mean_dice"] == pytest.approx(float(case_means.mean()), abs=1e-6)
    organs = result["test"]["classes"]
    assert result["organ_dice"] == pytest.approx(dict(zip(organs, np.nanmean(dice, axis=0))), abs=1e-6)
    # a label's Dice is its own round trip's: the first case scored again here
    first = data.folder / data.datalist(TINY.seeds[0])["test"][0]["label"]
    from monai.transforms import LoadImage

    label = LoadImage(image_only=True, ensure_channel_first=True)(first)
    assert case_dice(floor_label(label, [22.5] * 3, [16] * 3), label, len(organs) + 1) == result["test"]["dice"][0]


def test_a_size_without_a_coarse_grid_is_refused(tmp_path, capsys):
    assert main(["--size", "quick", "--workdir", str(tmp_path), "--out", str(tmp_path / "f.json")]) == 2
    assert "has no stage1_pixdim" in capsys.readouterr().err and not (tmp_path / "f.json").exists()
