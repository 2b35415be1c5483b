"""JSON kept whole (WholeJSONField): text on PostgreSQL, read back as it was written on every path."""

import importlib
from types import SimpleNamespace

import pytest
from django.core.exceptions import FieldError
from django.db import connection
from django.utils import timezone

from hie.bulk import insert_rows, rows_of
from matching.models import Link, PatientRecord, Person
from matching.selectors import norms_of
from tests.matching.factories import organization, register

COLUMNS = {("matching_patientrecord", "norm"), ("matching_person", "golden"), ("matching_link", "contributions"),
           ("matching_reviewcandidate", "explanation")}  # fmt: skip
GOLDEN = {"names": [{"given": "Ngozi", "family": "Okafor-Bell"}], "sex": "female", "phones": ["+15035550142"],
          "address": {"line": "12 Alder Ct", "city": "Salem"}, "identifiers": [], "birth_date": None}  # fmt: skip


def column_types() -> dict[tuple[str, str], str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE (table_name, column_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            [[t for t, _ in COLUMNS], [c for _, c in COLUMNS]],
        )
        return {(table, column): kind for table, column, kind in cursor.fetchall()}


@pytest.fixture
def on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("column types are PostgreSQL's; SQLite keeps every JSONField as text")


@pytest.mark.django_db
def test_whole_json_is_text_on_postgresql_and_comes_back_as_written(on_postgresql):
    assert column_types() == dict.fromkeys(COLUMNS, "text")
    record = register(organization(), given_name="Ngozi", family_name="Okafor-Bell").record
    made = Person.objects.create(golden=GOLDEN)
    now = timezone.now()
    insert_rows(Person, ("id", "euid", "status", "golden", "created_at", "updated_at"),
                [(made.pk + 1, "E0TESTWHOLEJ1", "active", GOLDEN, now, now)])  # fmt: skip
    assert [p.golden for p in Person.objects.filter(pk__in=[made.pk, made.pk + 1])] == [GOLDEN, GOLDEN]
    assert rows_of(Person.objects.filter(pk=made.pk).values_list("pk", "golden", "euid")) == [
        (made.pk, GOLDEN, made.euid)
    ]
    Link.objects.create(record=record, person=made, state="match", source="auto", contributions={"fields": []})
    linked = Link.objects.filter(record=record).values_list("record__norm", "contributions", "person__golden")
    assert rows_of(linked) == list(linked) == [(record.norm, {"fields": []}, GOLDEN)]
    assert norms_of(PatientRecord.objects.filter(pk=record.pk)) == [(record.pk, record.norm)]
    assert record.norm["given"] == "NGOZI"
    # The value is stored as the text it was written as, and selecting it DISTINCT works.
    assert Person.objects.filter(pk=made.pk).values_list("golden", flat=True).distinct().count() == 1


@pytest.mark.django_db
def test_looking_into_whole_json_is_refused():
    with pytest.raises(FieldError):
        list(Person.objects.filter(golden__sex="female"))
    with pytest.raises(FieldError):
        list(PatientRecord.objects.values_list("norm__family"))


@pytest.mark.django_db
def test_the_migration_turns_the_columns_to_text_and_back_to_jsonb_with_their_values(on_postgresql):
    migration = importlib.import_module("matching.migrations.0010_whole_json_kept_as_text")
    made = Person.objects.create(golden=GOLDEN)
    record = register(organization(), given_name="Ngozi", family_name="Okafor-Bell").record
    norm = record.norm

    def execute(sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    editor = SimpleNamespace(connection=connection, execute=execute)
    execute("SET CONSTRAINTS ALL IMMEDIATE")  # a table with checks waiting for the commit cannot be altered
    migration.to_jsonb(None, editor)
    assert column_types() == dict.fromkeys(COLUMNS, "jsonb")
    with connection.cursor() as cursor:
        cursor.execute("SELECT golden ->> 'sex' FROM matching_person WHERE id = %s", [made.pk])
        assert cursor.fetchone() == ("female",)
    migration.to_text(None, editor)
    assert column_types() == dict.fromkeys(COLUMNS, "text")
    assert Person.objects.get(pk=made.pk).golden == GOLDEN
    assert PatientRecord.objects.get(pk=record.pk).norm == norm
