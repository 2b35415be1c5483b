"""The bulk helpers: work in worker processes, the paused cycle collector, rows written with COPY."""

import gc
import json
import multiprocessing
from datetime import UTC, date, datetime

import pytest

from hie.bulk import in_processes, insert_rows, without_cycle_collection


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

    value = {"birth_date": date(1980, 2, 29), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
             "names": [{"given": "Ana"}], 7: 0.1 + 0.2, "nothing": None}  # fmt: skip
    insert_rows(Person, ("euid", "status", "golden", "created_at", "updated_at"),
                [("BULKJSON00000001", "active", value, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")])  # fmt: skip
    assert Person.objects.get(euid="BULKJSON00000001").golden == json.loads(json.dumps(value, default=str))
