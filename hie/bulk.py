"""Writing many rows at once, for bulk loads and batch matching.

Django's bulk_create builds a model instance per row and, on SQLite, splits inserts into
batches of a few dozen rows; a batch of 100,000 registrations spends most of its time there.
These helpers write plain tuples: COPY on PostgreSQL, executemany on SQLite. They bypass
model save() and signals, which the node does not use for these tables.
"""

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import orjson
from django.db import connection
from django.db.models import Model
from django.db.models.expressions import RawSQL


def among(values: Sequence[int] | Sequence[str]) -> Sequence | RawSQL:
    """The right-hand side of an `__in` look-up over many ids or keys.

    On PostgreSQL it is one array parameter: Django and psycopg otherwise prepare one
    placeholder per value, which for a batch of 100,000 records costs more than the query.
    Elsewhere it is the values themselves (callers keep lists within SQLite's limits).
    """
    if connection.vendor != "postgresql" or not values:
        return values
    kind = "bigint" if isinstance(values[0], int) else "text"
    return RawSQL(f"SELECT unnest(%s::{kind}[])", [list(values)])  # noqa: S611 - a fixed type name only


def _cell(value: object) -> object:
    if isinstance(value, dict | list):  # JSON, as json.dumps(value, default=str) would write it, faster
        return orjson.dumps(
            value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
        ).decode()
    return value


def insert_rows(model: type[Model], columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_cell(v) for v in row])
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608 - names from the model
                [[_cell(v) for v in row] for row in rows],
            )


def allocate_ids(model: type[Model], count: int) -> list[int]:
    """Primary keys for `count` new rows, reserved before they are written (in the caller's transaction)."""
    if count == 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
            )
            return [row[0] for row in cursor.fetchall()]
        # SQLite: the IMMEDIATE transaction holds the write lock, so nobody else takes these.
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        start = cursor.fetchone()[0] + 1
        return list(range(start, start + count))


def analyze(*models: type[Model]) -> None:
    """Refresh the planner's statistics of tables a bulk load has just grown.

    Until autovacuum gets to them, PostgreSQL plans with the statistics of the empty tables and
    turns indexed look-ups (blocking keys, identifiers) into scans; SQLite's ANALYZE feeds its
    planner the same way. Run after the load has committed. Outside a transaction PostgreSQL
    also vacuums them: the visibility map it sets lets look-ups that an index covers (a block of
    blocking keys) skip the table itself.
    """
    command = "VACUUM (ANALYZE)" if connection.vendor == "postgresql" and not connection.in_atomic_block else "ANALYZE"
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"{command} {connection.ops.quote_name(model._meta.db_table)}")


def in_processes(function: Callable[[list], list], chunks: list[list]) -> Iterator[list]:
    """`function` applied to each chunk, results in order, by forked worker processes (one per
    core) while the caller goes on with the results already back: normalising a bulk load is
    pure Python that one core cannot hurry.

    The workers are given plain data and must not touch the database: the connection they
    inherit stays the parent's (a pool worker leaves with os._exit, so it never closes it).
    Where this process may not have children (a Celery prefork worker is a daemon), on one
    core, or for a single chunk, the chunks are done here.
    """
    workers = min(os.cpu_count() or 1, len(chunks))
    if workers < 2 or multiprocessing.current_process().daemon:
        yield from map(function, chunks)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(function, chunks)


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Bulk work (as a block or as a decorator) with Python's cycle collector paused.

    Loading and matching a batch build millions of small dicts, lists and tuples that reference
    counting frees; the cycle collector would walk all of them again each time their number
    grows, which is half the time of reading back a batch of 150,000 records. It resumes when
    the block ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
