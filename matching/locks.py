"""Serialising the matching of records that could be the same person.

Two records of one person share at least one blocking key (that is what makes them
candidates). Matching takes a transaction-scoped lock on each of the record's keys, in sorted
order so two matchers never wait on each other in a cycle; the second of two concurrent
records then sees the person the first one created instead of creating another.
"""

import hashlib

from django.db import connection


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def lock_blocking_keys(keys: list[str]) -> None:
    if connection.vendor != "postgresql":
        # SQLite: the IMMEDIATE transaction already holds the database-wide write lock.
        return
    ids = sorted({_lock_id(key) for key in keys})
    if ids:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(id) FROM unnest(%s::bigint[]) AS id ORDER BY id", [ids])
