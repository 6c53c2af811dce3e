"""Simulated coarse masks for training a refinement: coarse but recognisable, reproducible, each degradation optional."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semcl_components.transforms import RandCoarseMask, RandCoarseMaskd

EXACT = dict(coarsen=1, max_radius=0, smooth_sigma=0.0, drop_prob=0.0, max_shift=0)


def _labels() -> torch.Tensor:
    label = torch.zeros(1, 48, 48, 40)
    label[0, 5:15, 5:20, 5:12] = 4
    label[0, 20:44, 15:40, 10:34] = 5
    label[0, 2:4, 40:44, 2:4] = 9  # not an organ to degrade below
    return label


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_without_degradations_the_map_is_unchanged():
    label = _labels()
    assert torch.equal(RandCoarseMask(**EXACT)(label), label)


def test_coarse_masks_differ_from_the_truth_but_stay_recognisable():
    label = _labels()
    simulator = RandCoarseMask(coarsen=2, max_radius=2, smooth_sigma=1.0, drop_prob=0.5, max_shift=2)
    simulator.set_random_state(0)
    scores = [_dice(simulator(label)[0] == 5, label[0] == 5) for _ in range(8)]
    assert 0.6 < np.mean(scores) < 0.97 and len(set(scores)) > 1  # coarse, and each draw its own


def test_the_same_seed_draws_the_same_coarse_map():
    first, second = RandCoarseMask(drop_prob=1.0), RandCoarseMask(drop_prob=1.0)
    first.set_random_state(3)
    second.set_random_state(3)
    assert torch.equal(first(_labels()), second(_labels()))


def test_missed_organs_and_classes_left_alone():
    label = _labels()
    missed = RandCoarseMask(classes=[4, 5], missing_prob=1.0, **{**EXACT, "coarsen": 2})(label)
    assert set(torch.unique(missed).tolist()) == {0.0, 9.0}  # both organs left out, class 9 copied
    assert torch.equal(missed == 9, label == 9)


def test_an_erosion_never_empties_a_small_organ():
    label = torch.zeros(1, 16, 16, 16)
    label[0, 7:9, 7:9, 7:9] = 2
    simulator = RandCoarseMask(**{**EXACT, "max_radius": 3})
    simulator.set_random_state(1)
    assert all((simulator(label) == 2).any() for _ in range(10))


def test_dict_version_writes_the_prior_and_keeps_the_label():
    data = {"label": _labels()}
    out = RandCoarseMaskd(keys="label", prior_key="prior", **EXACT)(data)
    assert torch.equal(out["prior"], data["label"]) and out["label"] is data["label"]
    with pytest.raises(ValueError, match="integer >= 1"):
        RandCoarseMask(coarsen=0)


def test_a_fixed_coarse_map_per_case_for_validation():
    from monai.data import MetaTensor
    from monai.transforms.traits import RandomizableTrait

    from semcl_components.transforms import CoarseMaskd

    def case(name: str) -> dict:
        return {"label": MetaTensor(_labels(), meta={"filename_or_obj": name})}

    fixed = CoarseMaskd(keys="label", seed=0, drop_prob=1.0)
    assert not isinstance(fixed, RandomizableTrait)  # so CacheDataset caches it with the deterministic transforms
    first, again, other = fixed(case("a.nii.gz"))["prior"], fixed(case("a.nii.gz"))["prior"], fixed(case("b.nii.gz"))
    assert torch.equal(first, again) and not torch.equal(first, other["prior"])
    assert not torch.equal(first, _labels())
