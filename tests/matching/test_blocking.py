"""Blocking: keys, and the pairs of records that share one."""

import itertools
from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from matching.blocking import (
    PASSES,
    SPLIT_PASSES,
    block_pairs,
    blocking_keys,
    blocks_in_use,
    candidate_pairs,
    key_for,
    pass_of,
)
from matching.normalize import normalise


def _brute_force(keys, positions, ranks, decides, cap):
    """Every pair the definition asks for, the slow way."""
    blocks: dict[int, list[int]] = {}
    for key, position in zip(keys, positions, strict=True):
        blocks.setdefault(key, []).append(position)
    pairs, oversized = set(), {}
    for key, members in blocks.items():
        if len(members) > cap:
            name = pass_of(key)
            oversized[name] = max(oversized.get(name, 0), len(members))
            continue
        for a, b in itertools.permutations([m for m in members if m >= 0], 2):
            if ranks[b] > ranks[a] and decides[b]:
                pairs.add((b, a))
    return sorted(pairs), oversized


def test_block_pairs_gives_each_pair_once_to_its_later_deciding_record():
    rng = np.random.default_rng(5)
    for _ in range(60):
        size = int(rng.integers(1, 60))
        ranks = rng.permutation(size) - int(rng.integers(0, 5))  # some ranks below zero, as known records have
        ranks[ranks < 0] = -1
        decides = ranks >= 0
        entries = [(key_for(PASSES[rng.integers(3)], str(rng.integers(12))), int(rng.integers(-1, size)))
                   for _ in range(int(rng.integers(0, 4 * size)))]  # fmt: skip
        entries = list(dict.fromkeys(entries))  # a record is filed under a key once
        keys = [k for k, _ in entries]
        positions = np.array([p for _, p in entries], dtype=np.int64)
        cap = int(rng.integers(2, 12))
        codes, names = pd.factorize(np.array(keys, dtype=np.int64))
        later, earlier, oversized = block_pairs(codes, names, positions, ranks, decides, cap)
        expected, expected_oversized = _brute_force(keys, positions.tolist(), ranks, decides, cap)
        assert list(zip(later.tolist(), earlier.tolist(), strict=True)) == expected
        assert oversized == expected_oversized


def test_a_key_is_a_signed_64_bit_integer_that_names_its_pass():
    keys = {name: [key_for(name, value) for value in ("", "19800101", "+15555550100", "x" * 200)] for name in PASSES}
    for name, values in keys.items():
        assert all(0 <= key < 2**63 for key in values)
        assert {pass_of(key) for key in values} == {name}
        assert len(set(values)) == len(values)
    assert key_for("dob", "19800101") == key_for("dob", "19800101") != key_for("fam_year", "19800101")


def test_an_entry_of_no_record_counts_towards_its_block_but_pairs_with_nobody():
    key = key_for("dob", "19800101")
    ranks, decides, codes, names = np.array([0, 1]), np.array([True, True]), np.zeros(3, np.int64), np.array([key])
    later, earlier, _ = block_pairs(codes, names, np.array([0, 1, -1]), ranks, decides, cap=3)
    assert (later.tolist(), earlier.tolist()) == ([1], [0])
    later, _, oversized = block_pairs(codes, names, np.array([0, 1, -1]), ranks, decides, cap=2)
    assert len(later) == 0
    assert oversized == {"dob": 3}


def test_candidate_pairs_are_ordered_by_the_first_record():
    shared = key_for("ssn", "1")
    left, right, _ = candidate_pairs([[shared], [shared, key_for("dob", "x")], [shared]], cap=10)
    assert list(zip(left.tolist(), right.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_keys_of_some_passes_are_the_record_keys_of_those_passes():
    from matching.blocking import blocking_keys
    from matching.normalize import normalise

    norm = normalise(
        given_name="Bill", family_name="Nguyen-Smith", birth_date=date(1980, 3, 4), ssn="521-43-8876",
        phones=["503-555-0142"], email="b@example.org", address_line="77 Larch St", postal_code="97301",
    )  # fmt: skip
    every = blocking_keys(norm)
    assert {pass_of(k) for k in every} == set(PASSES)
    for passes in (("dob",), ("fam_given",), ("dob", "fam_given"), ("ssn", "addr", "phone")):
        assert blocking_keys(norm, passes) == [k for k in every if pass_of(k) in passes]


@pytest.mark.django_db
def test_a_batch_reads_the_keys_of_its_records_alone_whether_their_ids_are_close_or_far_apart():
    from matching.batch import _keys_of
    from matching.models import BlockingKey
    from matching.synthetic import generate
    from tests.matching.factories import load

    ids = sorted(load(generate(40, seed=3).rows))
    close = [pk for pk in ids if pk % 3]  # gaps, but fewer ids missing than present
    far = ids[::5]
    for chosen in (ids, close, far, ids[:1]):
        expected = sorted(BlockingKey.objects.filter(record_id__in=chosen).values_list("key", "record_id"))
        assert expected
        assert sorted(map(tuple, _keys_of(chosen).tolist())) == expected


def test_a_batch_locks_the_buckets_its_records_would_lock_one_by_one():
    from matching.blocking import PASSES, key_for
    from matching.locks import LOCK_BUCKETS, LOCK_NAMESPACE, buckets_of

    keys = [key_for(name, f"{name} {n}") for n in range(3000) for name in PASSES]
    buckets = buckets_of(np.array(keys, dtype=np.int64))
    assert buckets == buckets_of(keys) == sorted(set(buckets_of(keys[:5000])) | set(buckets_of(keys[5000:])))
    assert buckets == sorted({LOCK_NAMESPACE | key % LOCK_BUCKETS for key in keys})
    assert 4000 < len(buckets) <= LOCK_BUCKETS  # 30,000 distinct keys spread over (nearly) all buckets
    assert buckets_of(["hl7-inbox:1"]) == buckets_of(["hl7-inbox:1", "hl7-inbox:1"]) != buckets_of(["hl7-inbox:2"])


def test_a_family_name_and_birth_year_block_also_takes_the_given_names_first_letter():
    from matching.normalize import normalise

    def family_year(**fields: object) -> set[int]:
        return set(blocking_keys(normalise(family_name="Quintanilla", birth_date=date(1984, 7, 19), **fields),
                                 passes={"fam_year"}))  # fmt: skip

    marisol = family_year(given_name="Marisol")
    assert len(marisol) == 1
    assert family_year(given_name="Mrisol") == marisol, "a misspelt given name keeps its first letter"
    assert family_year(given_name="Lucia").isdisjoint(marisol)
    no_given = family_year(given_name="")
    assert len(no_given) == 1, "a record without a given name is still filed"
    assert no_given.isdisjoint(marisol)


@pytest.mark.django_db
def test_the_family_year_migration_files_each_record_as_the_pass_does_and_back_as_it_did():
    import importlib

    from django.apps import apps
    from django.db import connection

    from matching.blocking import pass_range
    from matching.models import BlockingKey, PatientRecord
    from tests.matching.factories import organization, register

    migration = importlib.import_module("matching.migrations.0009_family_year_keys_with_given_initial")
    member = organization()
    for given, family in (("Marisol", "Quintanilla"), ("Lucia", "Quintanilla-Ruiz"), ("", "Oyelaran")):
        register(member, given_name=given, family_name=family)
    editor = SimpleNamespace(connection=connection)

    def filed() -> set[tuple[int, int]]:
        low, high = pass_range("fam_year")
        return set(BlockingKey.objects.filter(key__gte=low, key__lt=high).values_list("record_id", "key"))

    now = {(r.pk, key) for r in PatientRecord.objects.all() for key in blocking_keys(r.norm, passes={"fam_year"})}
    assert filed() == now
    assert len(now) == 4
    migration.without_given_initial(apps, editor)
    before = filed()
    assert len(before) == 4
    assert before.isdisjoint(now)
    assert {pass_of(key) for _, key in before} == {"fam_year"}
    migration.with_given_initial(apps, editor)
    assert filed() == now


def _one_town(people: int) -> list[dict]:
    """`people` Johns of one ZIP code, each of another family, birth date and house, and no SSN."""
    return [
        normalise(given_name="John", family_name=f"Family{n:04d}x", address_line=f"{100 + n} Main St",
                  birth_date=date(1900 + n % 100, 1 + n % 12, 1 + n % 28), postal_code="00000")
        for n in range(people)
    ]  # fmt: skip


def test_an_oversized_block_is_split_by_birth_year_instead_of_skipped():
    town = _one_town(600)
    # The same John under a married name and a mistyped birth date: only the given name, the
    # ZIP code and the birth year are left in common.
    town.append(normalise(given_name="John", family_name="Zzyzx", birth_date=date(1905, 9, 17),
                          address_line="9 Elm St", postal_code="00000"))  # fmt: skip
    left, right, oversized = candidate_pairs([blocking_keys(n) for n in town], cap=500)
    assert oversized["given_postal"] == 601
    assert (5, 600) in set(zip(left.tolist(), right.tolist(), strict=True))


def test_finer_blocks_add_no_pair_where_the_block_they_split_is_within_the_cap():
    town = _one_town(40)
    every = [blocking_keys(n) for n in town]
    finer = {key_for(name, "") >> 59 for name in SPLIT_PASSES.values()}
    coarse_only = [[k for k in keys if k >> 59 not in finer] for keys in every]
    with_finer, without = candidate_pairs(every, cap=500), candidate_pairs(coarse_only, cap=500)
    assert [a.tolist() for a in with_finer[:2]] == [a.tolist() for a in without[:2]]


def test_split_blocks_are_counted():
    keys = np.array(sorted({k for n in _one_town(600) for k in blocking_keys(n)}), dtype=np.int64)
    sizes = np.where(np.array([pass_of(k) == "given_postal" for k in keys]), 600, 1)
    used, split = blocks_in_use(sizes, keys, cap=500)
    assert split == 1
    assert not used[[pass_of(k) == "given_postal" for k in keys]].any()


@pytest.mark.django_db
def test_the_split_migration_files_each_record_as_the_finer_pass_does_and_removes_it_back():
    import importlib

    from django.apps import apps
    from django.db import connection

    from matching.blocking import pass_range
    from matching.models import BlockingKey, PatientRecord
    from tests.matching.factories import organization, register

    migration = importlib.import_module("matching.migrations.0011_given_postal_split_keys")
    member = organization()
    register(member, given_name="Marisol")
    register(member, given_name="Lucia", birth_date=None)
    editor = SimpleNamespace(connection=connection)

    def filed() -> set[tuple[int, int]]:
        low, high = pass_range("given_postal_split")
        return set(BlockingKey.objects.filter(key__gte=low, key__lt=high).values_list("record_id", "key"))

    now = {(r.pk, k) for r in PatientRecord.objects.all() for k in blocking_keys(r.norm, passes={"given_postal_split"})}
    assert filed() == now
    assert len(now) == 1, "a record without a birth date is not split"
    migration.remove_split_keys(apps, editor)
    assert filed() == set()
    migration.file_split_keys(apps, editor)
    assert filed() == now
