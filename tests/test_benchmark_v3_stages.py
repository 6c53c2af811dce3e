"""Benchmark v3's stages (docs/PROTOCOL_v3.md, section 13): scoring at the fine grid, stage 1's predictions and their
SHA-256, the plan's units per seed and setting with their dependencies, and the primary arms end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from semcl_benchmark.fine_grid import case_dice, nearest_onto


def test_a_coarse_label_map_lands_on_the_nearest_fine_voxels():
    # coarse voxels of 3 mm (centres at 0, 3, 6, 9 mm), fine voxels of 1 mm from 1 mm: no fine centre is equidistant
    coarse = torch.arange(4 * 2 * 2, dtype=torch.float32).reshape(1, 4, 2, 2) % 5
    coarse_affine = torch.diag(torch.tensor([3.0, 3.0, 3.0, 1.0]))
    fine_affine = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    fine_affine[:3, 3] = 1.0
    reference = MetaTensor(torch.zeros(1, 9, 4, 4), affine=fine_affine)
    moved = nearest_onto(MetaTensor(coarse, affine=coarse_affine), reference)
    assert moved.shape == (1, 9, 4, 4)
    nearest = [int(np.rint((j + 1) / 3)) for j in range(9)]  # fine voxel j is at j + 1 mm
    for i in range(9):
        for j in range(4):
            for k in range(4):
                ci, cj, ck = nearest[i], nearest[j], nearest[k]
                inside = ci < 4 and cj < 2 and ck < 2
                expected = coarse[0, ci, cj, ck] if inside else 0  # beyond the coarse extent: background
                assert moved[0, i, j, k] == expected, (i, j, k)
    assert torch.allclose(moved.affine.float(), fine_affine)


def test_organ_dice_leaves_absent_organs_out():
    label = torch.zeros(1, 4, 4, 4)
    label[0, :2] = 1  # organ 1: 32 voxels; organ 2 absent
    prediction = torch.zeros(1, 4, 4, 4)
    prediction[0, :1] = 1  # 16 of them
    prediction[0, 3] = 2  # organ 2 predicted where the label has none: still left out
    dice = case_dice(prediction, label, num_classes=3)
    assert dice[0] == pytest.approx(2 * 16 / (32 + 16), abs=1e-6) and dice[1] is None
