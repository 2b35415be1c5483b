"""The batch entry points: import_patients and dedupe_csv, and batch matching equal to one-by-one."""

import csv
import json
from collections import Counter
from datetime import date

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from hie.orgs.services import create_organization
from matching.batch import match_batch
from matching.blocking import blocking_keys
from matching.csv_input import HEADER, parse_row
from matching.models import BlockingKey, Link, LinkState, PatientRecord, PendingMatch, ReviewCandidate, ReviewTask
from matching.normalize import normalise
from matching.services import DEMOGRAPHIC_COLUMNS, match_record
from matching.synthetic import generate
from tests.matching.factories import load


def partition() -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for person_id, local_id in Link.objects.filter(state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH]).values_list(
        "person_id", "record__local_id"
    ):
        groups.setdefault(person_id, set()).add(local_id)
    return {frozenset(g) for g in groups.values()}


def pairwise_f1(truth: dict, predicted: dict) -> float:
    def pairs(counter: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    both = pairs(Counter((predicted[k], truth[k]) for k in truth))
    return 2 * both / (pairs(Counter(predicted.values())) + pairs(Counter(truth.values())))


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HEADER, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.django_db
def test_batch_matching_decides_as_one_by_one_matching_would():
    rows = generate(150, seed=9).rows
    ids = load(rows)
    match_batch(ids)
    batch_result = partition()
    # What each link and review candidate says of its pair (the batch writes these out in workers).
    explained = (
        sorted(Link.objects.values_list("record_id", "state", "score", "contributions")),
        sorted(ReviewCandidate.objects.values_list("task__record_id", "score", "explanation"), key=str),
    )
    assert any(contributions for *_, contributions in explained[0])
    assert explained[1]

    Link.objects.all().delete()
    ReviewTask.objects.all().delete()
    PendingMatch.objects.bulk_create(PendingMatch(record_id=pk, since=timezone.now()) for pk in ids)
    for record_id in sorted(ids):
        match_record(record_id)
    assert partition() == batch_result
    assert (
        sorted(Link.objects.values_list("record_id", "state", "score", "contributions")),
        sorted(ReviewCandidate.objects.values_list("task__record_id", "score", "explanation"), key=str),
    ) == explained


@pytest.mark.django_db
def test_a_load_normalised_in_worker_processes_stores_what_normalising_here_gives():
    rows = generate(60, seed=29).rows
    ids = load(rows, chunk=25)  # several chunks: normalised in forked workers
    assert len(ids) == len(rows) == len(set(ids))
    for record in PatientRecord.objects.filter(pk__in=ids):
        assert record.norm == normalise(**{column: getattr(record, column) for column in DEMOGRAPHIC_COLUMNS})
        assert sorted(record.blocking_keys.values_list("key", flat=True)) == blocking_keys(record.norm)


@pytest.mark.django_db
def test_dedupe_csv_finds_the_people_and_keeps_twins_and_generations_apart(tmp_path):
    population = generate(400, seed=21, twin_share=0.05, generation_share=0.05)
    write_csv(tmp_path / "in.csv", population.rows)
    call_command(
        "dedupe_csv", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv"), "--stats", str(tmp_path / "s.json")
    )
    with open(tmp_path / "out.csv") as handle:
        out = {(r["org_id"], r["local_id"]): r["person_id"] for r in csv.DictReader(handle)}
    truth = {(r["org_id"], r["local_id"]): r["true_person"] for r in population.rows}
    assert out.keys() == truth.keys()
    assert all(out.values())
    assert pairwise_f1(truth, out) > 0.95
    stats = json.loads((tmp_path / "s.json").read_text())
    assert (stats["records"], stats["persons"]) == (len(out), len(set(out.values())))
    assert stats["in_review"] == Link.objects.filter(state=LinkState.POSSIBLE_MATCH).count() > 0
    assert set(stats["timings"]) == {"load", "train", "match", "write"}
    # A provisional link waits for a person's review; a confirmed (MATCH) link is a merge.
    confirmed = dict(Link.objects.filter(state=LinkState.MATCH).values_list("record__local_id", "person_id"))
    persons_of: dict = {}
    for (_, local_id), true_person in truth.items():
        persons_of.setdefault(true_person, set()).add(confirmed.get(local_id, f"review:{local_id}"))
    for a, b in population.twin_pairs + population.generation_pairs:
        assert not persons_of[a] & persons_of[b], "twins and Sr/Jr are never merged"


@pytest.mark.django_db
def test_a_file_that_is_not_there_or_not_text_is_refused_before_anything_is_loaded(tmp_path):
    create_organization(name="Riverside", identifier_systems=["urn:oid:9.1"])
    with pytest.raises(CommandError, match="cannot read"):
        call_command("dedupe_csv", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out.csv"))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_patients", str(tmp_path / "missing.csv"), "--org", "Riverside")
    (tmp_path / "latin1.csv").write_bytes("org_id,local_id,given_name\nA,1,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8 text"):
        call_command("dedupe_csv", str(tmp_path / "latin1.csv"), "--out", str(tmp_path / "out.csv"))
    assert PatientRecord.objects.count() == 0


@pytest.mark.django_db
def test_import_with_a_bad_row_loads_nothing_and_reports_the_line(tmp_path, django_capture_on_commit_callbacks):
    create_organization(name="Riverside", identifier_systems=["urn:oid:9.1"])
    rows = [{**row, "org_id": ""} for row in generate(20, seed=2).rows]
    rows[3] = {**rows[3], "birth_date": "31/12/1980"}
    write_csv(tmp_path / "in.csv", rows)
    with pytest.raises(CommandError, match="nothing was loaded"):
        call_command("import_patients", str(tmp_path / "in.csv"), "--org", "Riverside")
    report = (tmp_path / "in.errors.txt").read_text()
    assert report == "line 5: birth_date is not a date in YYYY-MM-DD form\n"
    assert "1980" not in report
    assert PatientRecord.objects.count() == 0


@pytest.mark.django_db
def test_import_loads_and_matches_a_members_file(tmp_path, django_capture_on_commit_callbacks):
    create_organization(name="Riverside", identifier_systems=["urn:oid:9.1"])
    rows = [{**row, "org_id": ""} for row in generate(30, seed=4).rows]
    write_csv(tmp_path / "in.csv", rows)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_patients", str(tmp_path / "in.csv"), "--org", "Riverside")
    assert PatientRecord.objects.filter(organization__name="Riverside").count() == len(rows)
    assert not PendingMatch.objects.exists()
    assert Link.objects.filter(state=LinkState.MATCH).count() + Link.objects.filter(
        state=LinkState.POSSIBLE_MATCH
    ).count() == len(rows)
    # The planner's statistics know the load (blocking-key look-ups stay index scans).
    assert table_statistics(PatientRecord) > 0


def test_a_load_committed_outside_a_transaction_is_vacuumed_too(audit_rows_flushable, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL visibility map")
    create_organization(name="Riverside", identifier_systems=["urn:oid:9.1"])
    write_csv(tmp_path / "in.csv", [{**row, "org_id": ""} for row in generate(30, seed=5).rows])
    call_command("import_patients", str(tmp_path / "in.csv"), "--org", "Riverside")
    with connection.cursor() as cursor:
        cursor.execute("SELECT relallvisible FROM pg_class WHERE relname = %s", [BlockingKey._meta.db_table])
        # Pages all visible: a block of keys is read from the index alone.
        assert cursor.fetchone()[0] > 0


def table_statistics(model) -> int:
    """Rows the planner believes the table holds (PostgreSQL), or its statistics rows (SQLite)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [model._meta.db_table])
        else:
            cursor.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = %s", [model._meta.db_table])
        return int(cursor.fetchone()[0])


def test_csv_rows_are_checked_field_by_field():
    with pytest.raises(ValueError, match="sex is not one of"):
        parse_row(2, {"org_id": "a", "local_id": "1", "sex": "X-ray"})
    with pytest.raises(ValueError, match="local_id is empty"):
        parse_row(2, {"org_id": "a", "local_id": " "})
    assert parse_row(2, {"org_id": "a", "local_id": "1", "birth_date": "1990-02-03"}).demographics.birth_date == date(
        1990, 2, 3
    )


@pytest.mark.django_db
def test_a_later_batch_links_to_persons_already_in_the_index():
    rows = generate(120, seed=17).rows
    first, later = rows[:-30], rows[-30:]
    match_batch(load(first))
    persons_before = dict(Link.objects.filter(state=LinkState.MATCH).values_list("record__local_id", "person_id"))
    match_batch(load(later))
    person_of = dict(
        Link.objects.filter(state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH]).values_list(
            "record__local_id", "person_id"
        )
    )
    true_of = {row["local_id"]: row["true_person"] for row in rows}
    earlier_person_of_truth = {true_of[local]: person for local, person in persons_before.items()}
    joined = [row for row in later if row["true_person"] in earlier_person_of_truth]
    assert joined, "the later rows include people registered earlier"
    hits = sum(person_of[row["local_id"]] == earlier_person_of_truth[row["true_person"]] for row in joined)
    assert hits >= 0.9 * len(joined)
    assert all(persons_before[local] == person_of[local] for local in persons_before)


@pytest.mark.django_db
def test_a_load_that_repeats_stored_records_updates_them_and_adds_the_others():
    rows = generate(40, seed=23).rows
    first_ids = load(rows[:30])
    repeated = [{**row, "family_name": "Zabriskie"} for row in rows[20:30]]
    later_ids = load(repeated + rows[30:])
    stored = {r.local_id: r for r in PatientRecord.objects.all()}
    assert len(stored) == len(rows), "a repeated record is not stored twice"
    assert later_ids[:10] == first_ids[20:30], "a repeated record keeps its id"
    assert all(stored[row["local_id"]].family_name == "Zabriskie" for row in repeated)
    assert all(stored[row["local_id"]].version == 2 for row in repeated)
    assert all(stored[row["local_id"]].version == 1 for row in rows[:20] + rows[30:])


@pytest.mark.django_db
def test_batch_golden_records_equal_a_fresh_recomputation():
    from matching.models import Person
    from matching.services import refresh_golden_records

    match_batch(load(generate(80, seed=23).rows))
    from_batch = dict(Person.objects.values_list("pk", "golden"))
    assert all(from_batch.values())
    refresh_golden_records(list(from_batch))
    assert dict(Person.objects.values_list("pk", "golden")) == from_batch


@pytest.mark.django_db
def test_a_batch_task_is_logged_by_its_number_of_records_and_matches_them():
    from matching.tasks import match_batch_signature

    ids = load(generate(30, seed=5).rows)
    signature = match_batch_signature(ids)
    assert signature.options["argsrepr"] == f"[<{len(ids)} record ids>]"
    signature.apply()
    assert not PendingMatch.objects.exists()
    current = Link.objects.filter(record_id__in=ids, state__in=[LinkState.MATCH, LinkState.POSSIBLE_MATCH])
    assert current.count() == len(ids)
