"""The set operations on integer arrays give numpy's own answers."""

import numpy as np

from matching.arrays import distinct, members


def test_distinct_and_members_are_numpys_unique_and_isin():
    rng = np.random.default_rng(4)
    for size in (0, 1, 2, 50, 5000):
        values = rng.integers(-(2**62), 2**62, size) if size % 2 else rng.integers(-20, 20, size)
        assert np.array_equal(distinct(values), np.unique(values))
        ordered = np.unique(rng.integers(-20, 20, size // 3))
        queries = np.r_[values, ordered, -(2**63), 2**63 - 1].astype(np.int64)
        assert np.array_equal(members(queries, ordered), np.isin(queries, ordered))
    assert members(np.array([3, 4]), np.array([], dtype=np.int64)).tolist() == [False, False]
