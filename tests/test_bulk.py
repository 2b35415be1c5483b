"""The bulk helpers: pairs within blocks, work in worker processes, the paused cycle collector, COPY rows."""

import gc
import itertools
import json
import multiprocessing
from datetime import date

import numpy as np
import pandas as pd
import pytest

from hie.bulk import in_processes, insert_rows, without_cycle_collection
from matching.blocking import PASSES, block_pairs, candidate_pairs, key_for, pass_of


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


def _square_all(chunk: list[int]) -> list[int]:
    return [n * n for n in chunk]


def test_work_in_processes_comes_back_in_order_and_equal_to_work_done_here():
    chunks = [list(range(start, start + 7)) for start in range(0, 70, 7)]
    assert list(in_processes(_square_all, chunks)) == [_square_all(c) for c in chunks]


def _from_a_daemon(queue) -> None:
    queue.put(list(in_processes(_square_all, [[1, 2], [3]])))


def test_a_daemon_process_does_the_work_itself():
    queue = multiprocessing.get_context("fork").Queue()
    daemon = multiprocessing.get_context("fork").Process(target=_from_a_daemon, args=(queue,), daemon=True)
    daemon.start()
    assert queue.get(timeout=30) == [[1, 4], [9]]
    daemon.join(timeout=30)
    assert daemon.exitcode == 0


def _paused_then_raise() -> None:
    with without_cycle_collection():
        assert not gc.isenabled()
        with without_cycle_collection():
            assert not gc.isenabled()
        assert not gc.isenabled(), "an inner block leaves the outer one paused"
        raise RuntimeError


def test_the_cycle_collector_is_paused_in_the_block_and_back_after_it_even_when_it_raises():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        _paused_then_raise()
    assert gc.isenabled()


@pytest.mark.django_db
def test_insert_rows_writes_json_as_the_json_module_would():
    from matching.models import Person

    value = {"birth_date": date(1980, 2, 29), "names": [{"given": "Ana"}], 7: 0.1 + 0.2, "nothing": None}
    insert_rows(Person, ("euid", "status", "golden", "created_at", "updated_at"),
                [("BULKJSON00000001", "active", value, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")])  # fmt: skip
    assert Person.objects.get(euid="BULKJSON00000001").golden == json.loads(json.dumps(value, default=str))
