"""The bulk helpers: work in worker processes, the paused cycle collector, rows written with COPY."""

import gc
import json
import multiprocessing
import os
import threading
from datetime import UTC, date, datetime

import pytest
from django.db import IntegrityError, transaction

from hie.bulk import in_processes, insert_rows, processes_available, without_cycle_collection


def _square_all(chunk: list[int]) -> list[int]:
    return [n * n for n in chunk]


def test_work_in_processes_comes_back_in_order_and_equal_to_work_done_here():
    chunks = [list(range(start, start + 7)) for start in range(0, 70, 7)]
    assert list(in_processes(_square_all, chunks)) == [_square_all(c) for c in chunks]


def _worker_and_size(chunk: list) -> tuple[int, int]:
    return os.getpid(), len(chunk)


def test_workers_inherit_their_chunks_rather_than_being_sent_them():
    # A lock cannot be pickled: a chunk holding one reaches a worker only by inheritance.
    chunks = [[threading.Lock()], [1, 2], [3, 4, 5]]
    done = list(in_processes(_worker_and_size, chunks))
    assert [size for _, size in done] == [1, 2, 3]
    assert os.getpid() not in {pid for pid, _ in done}


def _from_a_daemon(queue) -> None:
    queue.put((processes_available(), list(in_processes(_square_all, [[1, 2], [3]]))))


def test_a_daemon_process_does_the_work_itself():
    queue = multiprocessing.get_context("fork").Queue()
    daemon = multiprocessing.get_context("fork").Process(target=_from_a_daemon, args=(queue,), daemon=True)
    daemon.start()
    assert queue.get(timeout=30) == (1, [[1, 4], [9]])
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

    value = {"birth_date": date(1980, 2, 29), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
             "names": [{"given": "Ana"}], 7: 0.1 + 0.2, "nothing": None}  # fmt: skip
    insert_rows(Person, ("euid", "status", "golden", "created_at", "updated_at"),
                [("BULKJSON00000001", "active", value, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")])  # fmt: skip
    assert Person.objects.get(euid="BULKJSON00000001").golden == json.loads(json.dumps(value, default=str))


@pytest.mark.django_db
def test_bigint_columns_are_written_as_given_whatever_their_sign_and_size():
    import numpy as np

    from hie.bulk import insert_bigints
    from matching.models import BlockingKey
    from tests.matching.factories import load

    records = load(_rows(3))
    BlockingKey.objects.all().delete()
    keys = np.array([-(2**63), -1, 0, 2**63 - 1, 9 << 59 | 12345, 7], dtype=np.int64)
    owners = np.repeat(np.array(records, dtype=np.int64), 2)
    insert_bigints(BlockingKey, ("record_id", "key"), (owners, keys))
    written = sorted(BlockingKey.objects.values_list("record_id", "key"))
    assert written == sorted(zip(owners.tolist(), keys.tolist(), strict=True))


@pytest.mark.django_db
def test_bigint_rows_are_the_rows_of_the_query_as_an_array():
    from hie.bulk import bigint_rows
    from matching.models import BlockingKey
    from tests.matching.factories import load

    records = load(_rows(4))
    query = BlockingKey.objects.filter(record_id__in=records[1:]).values_list("key", "record_id")
    found = bigint_rows(query)
    assert found.dtype == "int64"
    assert found.shape == (query.count(), 2)
    assert sorted(map(tuple, found.tolist())) == sorted(query)
    assert bigint_rows(query.filter(record_id=-1)).shape == (0, 2)
    assert bigint_rows(query.filter(record_id__in=[])).shape == (0, 2)


@pytest.mark.django_db
def test_insert_rows_keeps_dates_and_times_whatever_their_zone():
    from datetime import timedelta, timezone

    from matching.models import Person

    eastern = timezone(timedelta(hours=-5))
    at = datetime(2026, 3, 8, 1, 59, 59, 123456, tzinfo=eastern)
    insert_rows(Person, ("euid", "status", "golden", "created_at", "updated_at"),
                [("BULKTIME00000001", "active", {}, at, at + timedelta(microseconds=1))])  # fmt: skip
    person = Person.objects.get(euid="BULKTIME00000001")
    assert person.created_at == at
    assert person.updated_at - person.created_at == timedelta(microseconds=1)


def _definitions(table: str) -> set[str]:
    """The table's index and constraint definitions, as PostgreSQL writes them. A partial index's
    condition is left out: built again it reads the same but is printed with its casts elsewhere
    (the tests check what it does instead)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT split_part(indexdef, ' WHERE ', 1) FROM pg_indexes WHERE tablename = %s", [table])
        indexes = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass",
            [table],
        )
        return indexes | {row[0] for row in cursor.fetchall()}


@pytest.fixture
def on_postgresql():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("indexes are dropped and built again on PostgreSQL only")


def _rows(count: int) -> list[dict]:
    return [{"org_id": "Bulk", "local_id": f"B{i}", "given_name": f"Name{i}", "family_name": "Bulk",
             "birth_date": "1990-01-01"} for i in range(count)]  # fmt: skip


def _link_rows(count: int, person_id: int) -> list[tuple]:
    from matching.models import PatientRecord

    records = list(PatientRecord.objects.values_list("pk", flat=True)[:count])
    return [(record, person_id, "match", "auto", 0.99, {}, 1, "2026-01-01T00:00:00Z") for record in records]


@pytest.mark.django_db
def test_an_empty_table_is_loaded_without_its_indexes_and_references_and_gets_the_same_ones_back(on_postgresql):
    from hie.bulk import indexes_built_after
    from matching.batch import LINK_COLUMNS
    from matching.models import Link, Person
    from tests.matching.factories import load

    load(_rows(5))
    person = Person.objects.create(golden={})
    table = Link._meta.db_table
    before = _definitions(table)
    assert any("FOREIGN KEY" in d for d in before)
    with indexes_built_after(Link):
        during = _definitions(table)
        insert_rows(Link, LINK_COLUMNS, _link_rows(5, person.pk))
    # No table refers to links: their primary key goes too.
    assert not [d for d in during if d.startswith("CREATE")]
    assert not [d for d in during if "FOREIGN KEY" in d or "PRIMARY KEY" in d]
    assert _definitions(table) == before
    assert Link.objects.filter(person=person).count() == 5
    # The partial unique index (one current person per record) is back and does its work.
    with pytest.raises(IntegrityError, match="link_one_current_person_per_record"), transaction.atomic():
        insert_rows(Link, LINK_COLUMNS, _link_rows(1, Person.objects.create(golden={}).pk))


@pytest.mark.django_db
def test_a_primary_key_that_references_rely_on_stays_while_its_table_is_loaded(on_postgresql):
    from hie.bulk import indexes_built_after
    from matching.models import Person

    table = Person._meta.db_table
    with indexes_built_after(Person):
        during = _definitions(table)
        Person.objects.create(golden={})
    assert [d for d in during if d.startswith("CREATE")] == [
        f"CREATE UNIQUE INDEX {table}_pkey ON public.{table} USING btree (id)"
    ]


@pytest.mark.django_db
def test_a_primary_key_made_again_refuses_a_load_that_repeats_one(on_postgresql):
    import numpy as np

    from hie.bulk import indexes_built_after, insert_bigints
    from matching.models import BlockingKey

    before = _definitions(BlockingKey._meta.db_table)
    assert f"{BlockingKey._meta.db_table}_pkey PRIMARY KEY (record_id, key)" in before
    with pytest.raises(IntegrityError, match="_pkey"), indexes_built_after(BlockingKey):
        insert_bigints(BlockingKey, ("record_id", "key"), (np.array([1, 1]), np.array([7, 7])))
    assert _definitions(BlockingKey._meta.db_table) == before
    assert not BlockingKey.objects.exists()


@pytest.mark.django_db
def test_a_table_with_rows_keeps_its_indexes_while_it_is_loaded(on_postgresql):
    from hie.bulk import indexes_built_after
    from matching.batch import LINK_COLUMNS
    from matching.models import Link, Person
    from tests.matching.factories import load

    load(_rows(4))
    person = Person.objects.create(golden={})
    rows = _link_rows(4, person.pk)
    insert_rows(Link, LINK_COLUMNS, rows[:1])
    before = _definitions(Link._meta.db_table)
    with indexes_built_after(Link):
        assert _definitions(Link._meta.db_table) == before
        insert_rows(Link, LINK_COLUMNS, rows[1:])
    assert Link.objects.count() == 4


@pytest.mark.django_db
def test_a_broken_reference_fails_the_load_and_leaves_the_table_as_it_was(on_postgresql):
    from hie.bulk import indexes_built_after
    from matching.batch import LINK_COLUMNS
    from matching.models import Link
    from tests.matching.factories import load

    load(_rows(1))
    before = _definitions(Link._meta.db_table)
    with pytest.raises(IntegrityError), indexes_built_after(Link):
        insert_rows(Link, LINK_COLUMNS, _link_rows(1, person_id=987_654_321))  # no such person
    assert _definitions(Link._meta.db_table) == before
    assert not Link.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_allocated_ids_are_new_distinct_ascending_and_never_given_again():
    from hie.bulk import allocate_ids
    from matching.models import Person

    with transaction.atomic():
        ids = allocate_ids(Person, 500)
        insert_rows(Person, ("id", "euid", "status", "golden", "created_at", "updated_at"), [
            (pk, f"ALLOC{pk:011d}", "active", {}, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z") for pk in ids
        ])  # fmt: skip
    assert len(set(ids)) == 500
    assert ids == sorted(ids)
    later = Person.objects.create(euid="ALLOCLATER000001", golden={})
    assert later.pk not in ids
    assert allocate_ids(Person, 0) == []
    assert min(allocate_ids(Person, 3)) > max(ids)


@pytest.mark.django_db
def test_json_text_is_written_as_the_json_it_is():
    from hie.bulk import json_text
    from matching.models import Person

    value = {"given": "Ana", "phones": ["+15035550142"]}
    stamp = "2026-01-01T00:00:00Z"
    insert_rows(Person, ("euid", "status", "golden", "created_at", "updated_at"),
                [("BULKTEXT00000001", "active", json_text(value), stamp, stamp)])  # fmt: skip
    assert Person.objects.get(euid="BULKTEXT00000001").golden == value


@pytest.mark.django_db
def test_statistics_are_gathered_for_the_columns_queries_filter_on_and_not_for_json(on_postgresql):
    from django.db import connection

    from hie.bulk import analyze
    from matching.models import PatientRecord
    from tests.matching.factories import load

    load(_rows(20))
    analyze(PatientRecord)
    with connection.cursor() as cursor:
        cursor.execute("SELECT attname FROM pg_stats WHERE tablename = %s", [PatientRecord._meta.db_table])
        columns = {row[0] for row in cursor.fetchall()}
    assert {"local_id", "family_name", "birth_date", "active"} <= columns
    assert not columns & {"norm", "phones", "previous_family_names"}


@pytest.mark.django_db
def test_rows_read_in_bulk_are_the_rows_django_reads():
    from hie.bulk import rows_of
    from matching.models import Link, PatientRecord, Person
    from tests.matching.factories import load

    records = load(_rows(6))
    person = Person.objects.create(golden={"names": []})
    Link.objects.bulk_create(Link(record_id=pk, person=person, state="match", source="auto") for pk in records[:4])
    query = Link.objects.filter(state="match").order_by("record_id")
    columns = query.values_list("record__local_id", "person__euid", "record__birth_date", "person__golden", "score")
    assert rows_of(columns) == list(columns)
    assert len(rows_of(columns)) == 4
    assert rows_of(PatientRecord.objects.filter(pk__in=[]).values_list("pk")) == []


def _alongside_on_postgresql() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("work is done alongside on PostgreSQL only; SQLite has one writer at a time")


@pytest.mark.django_db(transaction=True)
def test_work_alongside_runs_on_its_own_connection_while_the_block_runs():
    from django.db import connection

    from hie.bulk import alongside

    _alongside_on_postgresql()
    started, release = threading.Event(), threading.Event()
    seen = {}

    def work() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen["backend"] = cursor.fetchone()[0]
        started.set()
        release.wait(10)
        seen["done"] = True
        return seen["backend"]

    with alongside(work) as outcome:
        assert started.wait(10), "the work runs while the block does"
        assert "done" not in seen
        release.set()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != seen["backend"]
    assert seen["done"], "the block ends when the work has"
    assert outcome.value == seen["backend"], "what the work returned is there after the block"


@pytest.mark.django_db(transaction=True)
def test_an_error_of_the_work_alongside_is_raised_when_the_block_ends():
    from hie.bulk import alongside

    _alongside_on_postgresql()

    def work() -> None:
        raise ValueError("statistics failed")

    reached = []
    with pytest.raises(ValueError, match="statistics failed"), alongside(work):
        reached.append(True)
    assert reached == [True]


@pytest.mark.django_db
def test_inside_a_transaction_the_work_alongside_is_done_first():
    # Another connection would not see the transaction's rows, and could wait on its locks.
    from hie.bulk import alongside

    order = []
    with alongside(lambda: order.append(threading.current_thread()) or len(order)) as outcome:
        order.append("block")
    assert order == [threading.current_thread(), "block"]
    assert outcome.value == 1


@pytest.mark.django_db
def test_many_ids_or_keys_are_looked_up_as_one_parameter_with_every_value():
    from hie.bulk import among
    from matching.models import PatientRecord
    from tests.matching.factories import organization, register

    member = organization()
    ids = [register(member, f"A{n}").record.pk for n in range(3)]
    wanted = [*ids[:2], max(ids) + 10**12]
    assert sorted(PatientRecord.objects.filter(pk__in=among(wanted)).values_list("pk", flat=True)) == ids[:2]
    assert PatientRecord.objects.filter(local_id__in=among(["A1", "A'2", "{A2}"])).count() == 1
    assert list(PatientRecord.objects.filter(pk__in=among([]))) == []


@pytest.mark.django_db
def test_rows_among_many_ids_are_deleted_and_no_others():
    from hie.bulk import delete_rows
    from matching.models import PendingMatch
    from tests.matching.factories import organization, register

    member = organization()
    ids = [register(member, f"D{n}").record.pk for n in range(4)]
    PendingMatch.objects.filter(record_id__in=ids).delete()
    PendingMatch.objects.bulk_create(PendingMatch(record_id=pk, since=datetime.now(UTC)) for pk in ids)
    delete_rows(PendingMatch, "record_id", [ids[0], ids[2], max(ids) + 10**12])
    assert sorted(PendingMatch.objects.values_list("record_id", flat=True)) == [ids[1], ids[3]]
    delete_rows(PendingMatch, "record_id", [])
    assert PendingMatch.objects.count() == 2
