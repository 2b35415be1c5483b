"""Training learns sensible parameters from the node's own records and stores a new model version."""

import numpy as np
import pytest

from matching.compare import level_of
from matching.models import MatchModel, ModelStatus, TrainingRun
from matching.normalize import normalise
from matching.score import DEFAULT_M, DEFAULT_U
from matching.selectors import active_scorer
from matching.synthetic import generate
from matching.training import expectation_maximisation, train, train_and_activate
from tests.matching.factories import demographics_of, load


@pytest.fixture(scope="module")
def population():
    return generate(600, seed=5)


@pytest.fixture(scope="module")
def norms(population):
    return [normalise(**demographics_of(row).as_fields()) for row in population.rows]


def test_em_learns_that_true_matches_agree(norms):
    parameters = train(norms).parameters
    given = parameters["m"]["given"]
    assert given[level_of("given", "exact")] > 0.5 > given[level_of("given", "different")]
    birth = parameters["m"]["birth_date"]
    assert birth[level_of("birth_date", "exact")] > 0.7
    # About 300 true pairs among ~860 records: the prior is the share of matching random pairs.
    assert 1e-4 < parameters["prior"] < 5e-3
    assert parameters["u"]["given"][level_of("given", "different")] > 0.9


def test_held_fields_keep_their_starting_m():
    levels = np.array([[5, 4, 0, 4, 1, 3, 1, 1, 4, -1], [0, 0, 0, 4, 0, 0, 0, 0, 0, -1]] * 20, dtype=np.int8)
    u, start = DEFAULT_U, DEFAULT_M
    m, _, _ = expectation_maximisation(levels, u, start=start, held=frozenset({"birth_date"}))
    assert m["birth_date"] == start["birth_date"]
    assert m["given"] != start["given"]


@pytest.mark.django_db
def test_training_on_the_stored_keys_of_a_sample_is_training_on_keys_derived_again(population):
    from matching.models import PatientRecord
    from matching.selectors import norms_of
    from matching.training import SESSIONS, _stored_keys

    ids = sorted(load(population.rows))[::2]  # a sample, as a large index is trained on
    inactive = ids[5]
    PatientRecord.objects.filter(pk=inactive).update(active=False)
    ids.remove(inactive)
    norm_of = dict(norms_of(PatientRecord.objects.filter(pk__in=ids)))
    sample = [norm_of[pk] for pk in ids]
    filed = {passes: _stored_keys(ids, passes) for passes, _ in SESSIONS}
    assert all(len(keys) and positions.max() < len(ids) for keys, positions in filed.values())
    assert train(sample, filed=filed) == train(sample)


@pytest.mark.django_db
def test_training_run_stores_and_activates_a_new_version(population, django_capture_on_commit_callbacks):
    load(population.rows[:400])
    first = train_and_activate(TrainingRun.objects.create().pk)
    second = train_and_activate(TrainingRun.objects.create().pk)
    assert (first.version, second.version) == (1, 2)
    first.refresh_from_db()
    assert first.status == ModelStatus.RETIRED
    assert MatchModel.objects.get(status=ModelStatus.ACTIVE) == second
    assert active_scorer().version == 2
    run = TrainingRun.objects.get(model=second)
    assert (run.status, run.progress) == (TrainingRun.Status.DONE, 100)
    assert second.evaluation["candidate_pairs"] > 0


@pytest.mark.django_db
def test_a_training_run_evaluates_the_new_model_on_the_staffs_labels(population):
    from itertools import combinations, pairwise

    from matching.models import PairLabel

    rows = population.rows[:400]
    ids = load(rows)
    by_person: dict = {}
    for pk, row in zip(ids, rows, strict=True):
        by_person.setdefault(row["true_person"], []).append(pk)
    same = [pair for pks in by_person.values() for pair in combinations(pks, 2)][:40]
    firsts = [pks[0] for pks in by_person.values()]
    different = list(pairwise(firsts[:41]))
    PairLabel.objects.bulk_create(
        [PairLabel(record_a_id=a, record_b_id=b, is_match=True) for a, b in same]
        + [PairLabel(record_a_id=a, record_b_id=b, is_match=False) for a, b in different]
    )
    labels = train_and_activate(TrainingRun.objects.create().pk).evaluation["labels"]
    assert (labels["labelled_pairs"], labels["matches"]) == (len(same) + len(different), len(same))
    assert labels["review"]["precision"] > 0.9
    assert labels["review"]["recall"] > 0.7
    assert labels["review"]["recall"] >= labels["auto_link"]["recall"]


@pytest.mark.django_db
def test_too_few_records_fail_the_run_with_a_message():
    run = TrainingRun.objects.create()
    with pytest.raises(ValueError, match="at least 50 records"):
        train_and_activate(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED


def test_distinct_agreement_patterns_are_what_numpy_unique_gives_for_rows():
    from matching.training import _distinct_rows

    rng = np.random.default_rng(3)
    levels = rng.integers(-1, 6, size=(5000, 10)).astype(np.int8)
    levels[:4000, 2:] = rng.integers(-1, 1, size=(4000, 8))  # many repeated patterns
    patterns, inverse, counts = np.unique(levels, axis=0, return_inverse=True, return_counts=True)
    found = _distinct_rows(levels)
    assert np.array_equal(found[0], patterns)
    assert np.array_equal(found[1], inverse.ravel())
    assert np.array_equal(found[2], counts)
