"""Seeds as draws (semcl_benchmark.splits): a fixed test and validation set, labelled volumes and pretraining pools
drawn per seed, stratified by contrast phase."""

from __future__ import annotations

from collections import Counter

import pytest

from semcl_benchmark.splits import UPPER_BOUND, fixed_splits, labelled_counts, seed_datalist

PHASES = ["native"] * 12 + ["arterial"] * 16 + ["portal_venous"] * 18 + ["delayed"] * 14


def cases(phases=PHASES) -> list[dict]:
    return [{"image": f"./imagesTr/c{i:03d}.nii.gz", "label": f"./labelsTr/c{i:03d}.nii.gz", "contrast_phase": phase}
            for i, phase in enumerate(phases)]


def names(entries) -> set[str]:
    return {e["image"] for e in entries}


FIXED = fixed_splits(cases(), test=24, validation=6, training_pool=12)


def test_the_fixed_sets_are_disjoint_and_cover_the_dataset():
    sets = [FIXED.test, FIXED.validation, FIXED.training_pool, FIXED.unlabelled_pool]
    assert [len(s) for s in sets] == [24, 6, 12, 18]
    assert len(set.union(*map(names, sets))) == len(PHASES)


def test_the_test_set_holds_every_phase_bucket_in_about_the_datasets_proportions():
    counts = Counter(e["contrast_phase"] for e in FIXED.test)
    assert set(counts) == set(PHASES)
    for phase, total in Counter(PHASES).items():
        assert abs(counts[phase] - 24 * total / len(PHASES)) <= 1.5, counts


def test_a_rare_bucket_still_reaches_the_test_set():
    fixed = fixed_splits(cases(["arterial"] * 30 + ["delayed"]), test=4, validation=2, training_pool=4)
    assert "delayed" in {e["contrast_phase"] for e in fixed.test}


def test_each_seed_draws_its_own_nested_labelled_volumes_from_the_training_pool():
    lists = {seed: seed_datalist(FIXED, seed, [1, 2, 4, 8], pretraining_pool=12) for seed in range(8)}
    for datalist in lists.values():
        assert names(datalist["finetune_1"]) < names(datalist["finetune_2"]) < names(datalist["finetune_4"])
        assert names(datalist["finetune_8"]) < names(datalist[UPPER_BOUND]) == names(FIXED.training_pool)
        assert datalist["test"] == FIXED.test and datalist["validation"] == FIXED.validation
        training = names(datalist[UPPER_BOUND]) | names(datalist["pretrain"])
        assert not training & names(FIXED.test) and not training & names(FIXED.validation)
        assert not names(datalist["pretrain"]) & names(FIXED.training_pool)
    assert len({tuple(sorted(names(d["finetune_4"]))) for d in lists.values()}) >= 6
    assert len({tuple(sorted(names(d["pretrain"]))) for d in lists.values()}) == 8
    assert {len(d["pretrain"]) for d in lists.values()} == {12}


def test_labelled_volumes_come_from_different_phase_buckets_where_the_pool_allows():
    pool_buckets = {e["contrast_phase"] for e in FIXED.training_pool}
    first_phases = set()
    for seed in range(8):
        datalist = seed_datalist(FIXED, seed, [1, 2, 4], pretraining_pool=12)
        phases = [e["contrast_phase"] for e in datalist["finetune_4"]]
        assert len(set(phases[:2])) == 2 and len(set(phases)) == min(4, len(pool_buckets))
        first_phases.add(phases[0])
    assert len(first_phases) >= 3  # the single labelled volume's phase varies between seeds


def test_the_same_seed_draws_the_same_datalist():
    assert seed_datalist(FIXED, 3, [1, 2], 12) == seed_datalist(FIXED, 3, [1, 2], 12)
    assert fixed_splits(cases(), 24, 6, 12) == FIXED


def test_a_dataset_without_phases_is_split_without_stratification():
    entries = [{"image": f"i{i}.nii.gz", "label": f"l{i}.nii.gz"} for i in range(10)]
    fixed = fixed_splits(entries, test=3, validation=2, training_pool=3)
    datalist = seed_datalist(fixed, 0, [1, 2], pretraining_pool=2)
    assert len(datalist["finetune_2"]) == 2 and len(datalist["pretrain"]) == 2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fixed_splits(cases()[:10], 6, 3, 4), r"= 13 cases, but the dataset has 10"),
        (lambda: fixed_splits(cases(), 3, 6, 12), r"test set of 3 cannot hold every contrast phase bucket"),
        (lambda: seed_datalist(FIXED, 0, [16], 12), r"setting finetune_16: the training pool has 12 cases"),
        (
            lambda: seed_datalist(FIXED, 0, [1], 19),  # issue 35: was 'must be 1..18', which read as 1..0 for none left
            r"pretraining_pool is 19, .* at most the cases left outside test 24, validation 6, training_pool 12: 18 of",
        ),
        (lambda: labelled_counts(["finetune_1", "few"]), r"setting 'few': .* finetune_<k>"),
    ],
)
def test_impossible_splits_are_refused_naming_the_setting(call, message):
    with pytest.raises(ValueError, match=message):
        call()
