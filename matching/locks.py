"""Serialising the matching of records that could be the same person.

Two records of one person share at least one blocking key (that is what makes them
candidates). Matching takes a transaction-scoped PostgreSQL advisory lock for each of the
record's keys, so the second of two concurrent records sees the person the first one created
instead of creating another. Keys are hashed into a fixed number of lock buckets, so a batch
of any size holds a bounded number of locks; buckets are taken in sorted order, so two
matchers never wait on each other in a cycle.
"""

import hashlib

import numpy as np
from django.db import connection

from matching.arrays import distinct

LOCK_BUCKETS = 4096
LOCK_NAMESPACE = 0x4D5049 << 32  # "MPI": keeps these ids apart from other advisory lock users


def _as_integer(key: int | str) -> int:
    """A blocking key as it is (an integer whose low bits are already a hash); any other name hashed."""
    if isinstance(key, str):
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big")
    return key


def buckets_of(keys: list[int] | list[str] | np.ndarray) -> list[int]:
    """The lock ids of some keys, sorted and each once (a batch gives its keys as an int64 array)."""
    if not isinstance(keys, np.ndarray):
        keys = np.array([_as_integer(key) for key in keys], dtype=np.int64)
    return distinct(LOCK_NAMESPACE | (keys.astype(np.int64) % LOCK_BUCKETS)).tolist()


def lock_blocking_keys(keys: list[int] | list[str] | np.ndarray) -> None:
    if connection.vendor != "postgresql":
        # SQLite: the IMMEDIATE transaction already holds the database-wide write lock.
        return
    buckets = buckets_of(keys)
    if buckets:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(id) FROM unnest(%s::bigint[]) AS id ORDER BY id", [buckets])
