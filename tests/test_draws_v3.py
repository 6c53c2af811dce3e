"""Benchmark v3's draws (semcl_benchmark.draws_v3): the proposed design keeps seeds apart, phase-stratified, around a
fixed test and validation set; a subject count that cannot do so is refused with the count that can."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from semcl_benchmark.draws_v3 import (
    MAIN_SEEDS,
    TUNING_SEEDS,
    draw_design,
    min_subjects,
    overlap_lower_bound,
    realistic_phases,
)

#: the protocol draft's proposal: 180 realistic subjects, test 32, validation 8, pool 12, 2 labelled volumes
PROPOSED = {"test": 32, "validation": 8, "pool": 12, "labelled": 2}
SUBJECTS = PROPOSED["test"] + PROPOSED["validation"] + len(MAIN_SEEDS + TUNING_SEEDS) * (2 + 12)
PHASES = realistic_phases(SUBJECTS)
DESIGN = draw_design(PHASES, **PROPOSED)


def buckets(cases) -> Counter:
    return Counter(PHASES[c] for c in cases)


def test_the_design_has_every_seed_and_the_sizes_asked_for():
    assert [d.seed for d in DESIGN.seeds] == list(MAIN_SEEDS + TUNING_SEEDS)
    assert set(MAIN_SEEDS).isdisjoint(TUNING_SEEDS)
    assert (len(DESIGN.test), len(DESIGN.validation)) == (32, 8)
    assert all((len(d.labelled), len(d.pool)) == (2, 12) for d in DESIGN.seeds)


def test_test_and_validation_are_fixed_disjoint_and_hold_every_phase():
    every = set(PHASES.values())
    assert set(buckets(DESIGN.test)) == every and set(buckets(DESIGN.validation)) == every
    assert set(DESIGN.test).isdisjoint(DESIGN.validation)
    held_out = set(DESIGN.test) | set(DESIGN.validation)
    assert all(held_out.isdisjoint(d.training) for d in DESIGN.seeds)
    # the test set keeps the dataset's phase mix (within a case of each bucket's share)
    for phase, total in buckets(PHASES).items():
        assert abs(buckets(DESIGN.test)[phase] - 32 * total / SUBJECTS) <= 1, buckets(DESIGN.test)


def test_at_one_volume_the_ten_seeds_label_ten_different_phase_stratified_cases():
    firsts = [d.labelled[0] for d in DESIGN.seeds]
    assert len(set(firsts)) == len(MAIN_SEEDS + TUNING_SEEDS)
    main = buckets(d.labelled[0] for d in DESIGN.seeds if d.seed in MAIN_SEEDS)
    assert set(main) == set(PHASES.values()) and max(main.values()) - min(main.values()) <= 1, main
    tuning = [PHASES[d.labelled[0]] for d in DESIGN.seeds if d.seed in TUNING_SEEDS]
    assert len(set(tuning)) == len(tuning)


def test_two_volume_sets_are_disjoint_nested_and_span_two_phases():
    sets = [set(d.labelled) for d in DESIGN.seeds]
    assert all(a.isdisjoint(b) for a, b in combinations(sets, 2))
    assert all(DESIGN.record(d.seed, 1)["labelled"] == DESIGN.record(d.seed, 2)["labelled"][:1] for d in DESIGN.seeds)
    assert all(PHASES[d.labelled[0]] != PHASES[d.labelled[1]] for d in DESIGN.seeds)


def test_at_the_proposed_count_seeds_share_no_training_case_and_pools_keep_the_phase_mix():
    assert DESIGN.max_overlap("training") == 0 and DESIGN.max_overlap("pool") == 0
    for draw in DESIGN.seeds:
        assert set(draw.labelled).isdisjoint(draw.pool)
        assert set(buckets(draw.pool)) == set(PHASES.values()), (draw.seed, buckets(draw.pool))


def test_a_result_file_records_the_whole_draw():
    record = DESIGN.record(3, 2)
    assert set(record) == {"labelled", "pool", "validation", "test", "phases"}
    assert record["pool"] == list(DESIGN.seed(3).pool) and record["test"] == list(DESIGN.test)
    assert record["phases"] == {c: PHASES[c] for c in (*DESIGN.seed(3).training, *DESIGN.validation, *DESIGN.test)}
    with pytest.raises(KeyError, match="seed 42"):
        DESIGN.record(42, 1)


def test_the_design_is_deterministic_and_its_seed_changes_it():
    assert draw_design(PHASES, **PROPOSED) == DESIGN
    assert draw_design(PHASES, **PROPOSED, seed=1).test != DESIGN.test


@pytest.mark.parametrize("subjects", [60, 90, 120])
def test_with_fewer_subjects_the_overlap_meets_the_counting_bound(subjects):
    design = draw_design(realistic_phases(subjects), **PROPOSED)
    training = subjects - 40
    assert design.max_overlap("training") == overlap_lower_bound(training, 10, 14)
    assert design.max_overlap("pool") <= design.max_overlap("training")
    # the other properties hold whatever the count
    assert len({c for d in design.seeds for c in d.labelled}) == 20
    assert all(set(d.labelled).isdisjoint(d.pool) for d in design.seeds)


@pytest.mark.parametrize("cases,seeds,size", [(4, 3, 2), (5, 4, 2), (6, 4, 3), (5, 3, 3)])
def test_the_counting_bound_never_exceeds_the_best_possible_overlap(cases, seeds, size):
    subsets = list(combinations(range(cases), size))

    def worst(choice):
        return max(len(set(a) & set(b)) for a, b in combinations(choice, 2))

    best = min(worst(choice) for choice in combinations(subsets, seeds))
    assert overlap_lower_bound(cases, seeds, size) <= best


def test_the_smallest_counts_for_disjoint_pools_and_disjoint_training_data():
    seeds = len(MAIN_SEEDS + TUNING_SEEDS)
    assert min_subjects("training", **PROPOSED) == SUBJECTS
    assert min_subjects("pool", **PROPOSED) == 40 + seeds * 12
    assert draw_design(realistic_phases(SUBJECTS - 1), **PROPOSED).max_overlap("training") > 0


def test_too_few_subjects_for_different_labelled_volumes_is_refused_with_the_count_that_suffices():
    with pytest.raises(ValueError, match="need 20 different cases.*use at least 60 subjects"):
        draw_design(realistic_phases(59), **PROPOSED)


def test_a_pool_larger_than_the_unlabelled_cases_is_refused():
    with pytest.raises(ValueError, match="pretraining pool of 30 cannot be drawn"):
        draw_design(realistic_phases(60), **{**PROPOSED, "pool": 30})


def test_a_test_set_smaller_than_the_phase_buckets_is_refused():
    with pytest.raises(ValueError, match="cannot hold every contrast phase bucket"):
        draw_design(realistic_phases(180), **{**PROPOSED, "test": 3})


def test_realistic_phases_are_the_generators_phases():
    from semcl_phantoms.phantoms import generate_phantom

    phases = realistic_phases(6, seed=4)
    generated = {
        f"phantom_{i:03d}": generate_phantom((12, 12, 8), seed=(4, i), preset="realistic").phase for i in range(6)
    }
    assert phases == generated
