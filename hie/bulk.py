"""Writing many rows at once, for bulk loads and batch matching.

Django's bulk_create builds a model instance per row and, on SQLite, splits inserts into
batches of a few dozen rows; a batch of 100,000 registrations spends most of its time there.
These helpers write plain tuples: COPY on PostgreSQL, executemany on SQLite. They bypass
model save() and signals, which the node does not use for these tables.
"""

import gc
import itertools
import multiprocessing
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import orjson
from django.core.checks import Tags
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections, transaction
from django.db.models import DateField, DateTimeField, JSONField, Model, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.sql.compiler import SQLCompiler
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import set_json_loads

# The system checks of a bulk command (import_patients, dedupe_csv): those of the models it
# writes. The web node's own (URL configuration, security settings) import every view, which
# took a second of each run; `manage.py check`, `migrate` and the server run them.
BULK_COMMAND_CHECKS = [Tags.models]


def among(values: Sequence[int] | Sequence[str]) -> Sequence | RawSQL:
    """The right-hand side of an `__in` look-up over many ids or keys.

    On PostgreSQL it is one array parameter: Django and psycopg otherwise prepare one
    placeholder per value, which for a batch of 100,000 records costs more than the query.
    Integers go as the text of an array literal, which the server reads: psycopg adapts a list
    value by value in Python, three times as long. Elsewhere it is the values themselves
    (callers keep lists within SQLite's limits).
    """
    if connection.vendor != "postgresql" or not values:
        return values
    if isinstance(values[0], int):
        return RawSQL("SELECT unnest(%s::bigint[])", [_bigint_array(values)])
    return RawSQL("SELECT unnest(%s::text[])", [list(values)])


def _bigint_array(values: Sequence[int]) -> str:
    """Integers as the text of a PostgreSQL array literal."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def delete_rows(model: type[Model], column: str, ids: Sequence[int]) -> None:
    """Delete the rows whose `column` holds one of these ids (as many as a batch's).

    On PostgreSQL the ids are one array that the server hashes while it reads the table once:
    `IN` over `among()` grouped the ids and then looked each one up in the index, three times as
    long for 150,000 of them (0.3 s against 0.1 s). Elsewhere it is the ORM's delete.
    """
    if connection.vendor != "postgresql":
        model.objects.filter(**{f"{column}__in": among(ids)}).delete()
        return
    table, name = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(column)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {name} = ANY(%s::bigint[])", [_bigint_array(ids)])  # noqa: S608


def json_text(value: object) -> object:
    """A JSON column's value as insert_rows writes it: dicts and lists as JSON text (as
    json.dumps(value, default=str) would write it, faster); text is taken as JSON already
    written, so that it can be encoded away from the process that writes the rows."""
    if isinstance(value, dict | list):
        return orjson.dumps(
            value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
        ).decode()
    return value


def insert_rows(model: type[Model], columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            rows = _encoded(rows, model, columns, dates=True)
            # COPY goes to psycopg's own cursor: its errors are given Django's types here.
            with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608 - names from the model
                list(_encoded(rows, model, columns, dates=False)),
            )


def _encoded(
    rows: Iterable[Sequence[object]], model: type[Model], columns: Sequence[str], *, dates: bool
) -> Iterable[Sequence[object]]:
    """The rows with JSON values encoded and, if asked, dates and times written in ISO 8601; the
    other values go to the driver as they are. (psycopg took two thirds of the time of a COPY of
    records adapting their dates and times, where the text costs a tenth.)"""
    fields = {f.column: f for f in model._meta.concrete_fields}
    json = [i for i, column in enumerate(columns) if isinstance(fields[column], JSONField)]
    times = [i for i, column in enumerate(columns) if dates and isinstance(fields[column], DateField | DateTimeField)]
    if not json and not times:
        yield from rows
        return
    written: dict = {}  # a batch stamps its rows with one time: each distinct value is written once
    for row in rows:
        row = list(row)
        for i in json:
            row[i] = json_text(row[i])
        for i in times:
            value = row[i]
            if value is not None and not isinstance(value, str):
                if value not in written:
                    written[value] = value.isoformat()
                row[i] = written[value]
        yield row


# PostgreSQL's binary COPY: a signature, flags and a header extension length, then the rows,
# then -1 where the next row's column count would be.
_BINARY_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_COPY_TRAILER = b"\xff\xff"


def insert_bigints(model: type[Model], columns: Sequence[str], values: Sequence[np.ndarray]) -> None:
    """Rows of bigint columns, given column-wise as arrays of equal length (blocking keys).

    On PostgreSQL the rows are encoded for binary COPY all at once with numpy: a million rows
    take milliseconds, where passing them one by one as tuples took seconds.
    """
    if connection.vendor != "postgresql":
        insert_rows(model, columns, zip(*(np.asarray(v).tolist() for v in values), strict=True))
        return
    rows = np.empty(len(values[0]), dtype=[("count", ">i2")] + [
        item for i in range(len(columns)) for item in ((f"size{i}", ">i4"), (f"value{i}", ">i8"))
    ])  # fmt: skip
    rows["count"] = len(columns)
    for i, column in enumerate(values):
        rows[f"size{i}"] = 8
        rows[f"value{i}"] = column
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    statement = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        copy.write(_BINARY_COPY_HEADER + rows.tobytes() + _BINARY_COPY_TRAILER)


def sql_of(queryset: QuerySet) -> tuple[SQLCompiler, str, tuple] | None:
    """The compiler, SQL and parameters of a query, to run on the cursor itself; None for a filter
    that nothing can pass (such as an empty `__in`), which Django answers without asking the
    database."""
    compiler = queryset.query.get_compiler(connection=connection)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    return compiler, sql, params


def rows_of(queryset: QuerySet) -> list[tuple]:
    """The rows of a values_list query, read in bulk.

    On PostgreSQL they come from psycopg's own cursor, with JSON columns decoded by orjson (JSON
    kept in a text column too, as Django would) and timestamps by psycopg's compiled loader.
    Django loads JSON as text for its fields to decode, and timestamps through a loader written
    in Python that only sets the zone the connection already gives (UTC); for a batch's 150,000
    records they cost a second. Elsewhere Django reads them.
    """
    if connection.vendor != "postgresql":
        return list(queryset)
    compiled = sql_of(queryset)
    if compiled is None:
        return []
    compiler, *statement = compiled
    # JSON kept in a text column (matching.models.WholeJSONField) comes as its text: decoded here.
    fields = [column.output_field for column, _, _ in compiler.select]
    kept_as_text = [i for i, f in enumerate(fields) if isinstance(f, JSONField) and f.db_type(connection) == "text"]
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        cursor = wrapper.cursor
        set_json_loads(orjson.loads, cursor)
        cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(*statement)
        rows = cursor.fetchall()
    if kept_as_text:
        rows = [_decoded(row, kept_as_text) for row in rows]
    return rows


def _decoded(row: tuple, columns: list[int]) -> tuple:
    values = list(row)
    for i in columns:
        if values[i] is not None:
            values[i] = orjson.loads(values[i])
    return tuple(values)


def _int8s(packed: bytes | memoryview | None) -> np.ndarray:
    """The numbers of a string_agg of int8send (big-endian eight-byte integers), as int64."""
    return np.frombuffer(bytes(packed or b""), dtype=">i8").astype(np.int64)


def bigint_rows(queryset: QuerySet) -> np.ndarray:
    """The rows of a values_list query of bigint columns that are never NULL (blocking keys and
    record ids), as an int64 array of shape (rows, columns).

    On PostgreSQL each column comes back as one value, its numbers packed by the server
    (string_agg of int8send), which numpy reads in one go: a batch's two million keys took
    seconds as Python tuples, and as COPY rows too.
    """
    width = len(queryset._fields)
    compiled = sql_of(queryset)
    if compiled is None:
        return np.zeros((0, width), dtype=np.int64)
    _, sql, params = compiled
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(sql, params)
            return np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, width)
        # One aggregation pass feeds every row to each aggregate in turn: the columns stay aligned.
        packed = ", ".join(f"string_agg(int8send(c{i}), ''::bytea)" for i in range(width))
        names = ", ".join(f"c{i}" for i in range(width))
        cursor.execute(f"SELECT count(*), {packed} FROM ({sql}) AS found ({names})", params)  # noqa: S608
        count, *columns = cursor.fetchone()
    values = [_int8s(column) for column in columns]
    if any(len(column) != count for column in values):
        raise ValueError("bigint_rows reads bigint columns that are never NULL")
    return np.stack(values, axis=1) if count else np.zeros((0, width), dtype=np.int64)


@contextmanager
def indexes_built_after(*models: type[Model]) -> Iterator[None]:
    """A bulk load into tables that are empty, with their indexes and references checked once at the end.

    For each row written PostgreSQL adds an entry to every index of the table and queues a check
    of every reference it holds; for a dozen blocking keys per record that costs several times
    what building the index from the finished table, and checking a reference with one join,
    do. So when a table is empty (the first load of an index), its indexes (the primary key too,
    unless another table's reference relies on it) and its foreign keys are dropped, and made
    again after the block; all in one savepoint,
    so that if the block fails the drop is undone with the rows. The table stays locked (ACCESS
    EXCLUSIVE) until the caller's transaction ends: reads of it wait for the load, as they would
    have found nothing. Tables with rows, and other databases, are written to as they are.
    """
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with _pending_checks_made():
            rebuild = _drop_indexes_of_empty(models)
        yield
        if rebuild:
            with _pending_checks_made(), connection.cursor() as cursor:
                for statement in rebuild:
                    cursor.execute(statement)


@contextmanager
def _pending_checks_made() -> Iterator[None]:
    """A block that alters tables, with the checks that earlier rows left for the commit made first.

    A table cannot be altered while checks of its rows or references wait for the commit, so
    they are made now; after the block they are deferred again (Django declares every reference
    deferrable, initially deferred). If the block fails, the rollback of the caller's savepoint
    restores the deferral with everything else.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _drop_indexes_of_empty(models: Sequence[type[Model]]) -> list[str]:
    """Drop the secondary indexes and foreign keys of those tables that are empty; the statements
    that make them again (indexes first)."""
    indexes, references = [], []
    with connection.cursor() as cursor:
        for model in models:
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608 - a model's table
            if cursor.fetchone()[0]:
                continue
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608 - filled while we waited?
            if cursor.fetchone()[0]:
                continue
            # Indexes (with the unique constraints and primary key they carry) but any that a
            # reference from elsewhere relies on; then the table's own references.
            cursor.execute(
                """
                SELECT quote_ident(i.relname), pg_get_indexdef(x.indexrelid),
                       quote_ident(c.conname), pg_get_constraintdef(c.oid)
                FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
                WHERE x.indrelid = %s::regclass
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = x.indexrelid)
                """,
                [model._meta.db_table],
            )
            for index, index_sql, constraint, constraint_sql in cursor.fetchall():
                if constraint:
                    cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
                    indexes.append(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {constraint_sql}")
                else:
                    cursor.execute(f"DROP INDEX {index}")
                    indexes.append(index_sql)
            cursor.execute(
                "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = %s::regclass AND contype = 'f'",
                [model._meta.db_table],
            )
            for constraint, constraint_sql in cursor.fetchall():
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
                references.append(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {constraint_sql}")
    return indexes + references


def allocate_ids(model: type[Model], count: int) -> list[int]:
    """Primary keys for `count` new rows, reserved before they are written (in the caller's transaction)."""
    if count == 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The sequence is looked up once (per row it cost ten times the numbers), and the
            # numbers come back packed as one value, as in bigint_rows.
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            sequence = cursor.fetchone()[0]
            cursor.execute(
                "SELECT string_agg(int8send(nextval(%s::regclass)), ''::bytea) FROM generate_series(1, %s)",
                [sequence, count],
            )
            return np.sort(_int8s(cursor.fetchone()[0])).tolist()
        # SQLite: the IMMEDIATE transaction holds the write lock, so nobody else takes these.
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        start = cursor.fetchone()[0] + 1
        return list(range(start, start + count))


def analyze(*models: type[Model], vacuum: Collection[type[Model]] = ()) -> None:
    """Refresh the planner's statistics of tables a bulk load has just grown.

    Until autovacuum gets to them, PostgreSQL plans with the statistics of the empty tables and
    turns indexed look-ups (blocking keys, identifiers) into scans; SQLite's ANALYZE feeds its
    planner the same way. Run after the load has committed. On PostgreSQL the JSON columns are
    left out (no query filters on them, and sampling them was most of the time), and the tables
    in `vacuum` are also vacuumed: the visibility map it sets lets look-ups that an index covers
    (a block of blocking keys) skip the table itself.
    """
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        for model in models:
            table = connection.ops.quote_name(model._meta.db_table)
            if not postgresql:
                cursor.execute(f"ANALYZE {table}")
                continue
            command = "VACUUM (ANALYZE)" if model in vacuum and not connection.in_atomic_block else "ANALYZE"
            columns = ", ".join(
                connection.ops.quote_name(field.column)
                for field in model._meta.concrete_fields
                if field.column and not isinstance(field, JSONField)
            )
            cursor.execute(f"{command} {table} ({columns})")


@dataclass
class Outcome:
    """What work done alongside returned: set when its block ends."""

    value: object = None


@contextmanager
def alongside(work: Callable[[], object]) -> Iterator[Outcome]:
    """`work` done on a connection of its own while the block runs, and finished when it ends.

    For server work the next step does not wait on, such as the statistics of a bulk load
    (analyze) while the model trains, or reads while this process computes: the server does it
    on one core while this process works on the other. Its connection sees what has been
    committed, so inside a transaction, and on SQLite (one writer at a time), the work is done
    first. What it returns is the yielded outcome's value after the block; an error in `work`
    is raised when the block ends.
    """
    outcome = Outcome()
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        outcome.value = work()
        yield outcome
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.value = work()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            connections.close_all()  # this thread's connection

    thread = threading.Thread(target=run, name="alongside")
    thread.start()
    try:
        yield outcome
    finally:
        thread.join()
    if failure:
        raise failure[0]


def processes_available() -> int:
    """How many processes in_processes would work in at most: one per core, or only this one
    where it may not have children (a Celery prefork worker is a daemon)."""
    return 1 if multiprocessing.current_process().daemon else os.cpu_count() or 1


def in_processes(function: Callable[[object], object], chunks: list) -> Iterator:
    """`function` applied to each chunk, results in order, by forked worker processes (one per
    core) while the caller goes on with the results already back: normalising a bulk load is
    pure Python that one core cannot hurry.

    The workers inherit the chunks when they are forked and are sent only each one's place:
    pickling a bulk load's 150,000 records to send them took a second of the caller's time.
    Results come back pickled. The workers must not touch the database: the connection they
    inherit stays the parent's (a pool worker leaves with os._exit, so it never closes it).
    Where this process may not have children (a Celery prefork worker is a daemon), on one
    core, or for a single chunk, the chunks are done here.
    """
    workers = min(processes_available(), len(chunks))
    if workers < 2:
        yield from map(function, chunks)
        return
    call = next(_calls)
    _inherited[call] = (function, chunks)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_inherited_chunk, [(call, i) for i in range(len(chunks))])
    finally:
        del _inherited[call]


# The work of in_processes calls under way, by call: what their workers inherit.
_inherited: dict[int, tuple[Callable, list]] = {}
_calls = itertools.count()


def _inherited_chunk(task: tuple[int, int]) -> object:
    call, i = task
    function, chunks = _inherited[call]
    return function(chunks[i])


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
