# The fam_year blocking pass files a record under its family name's Soundex and birth year and,
# now, the first letter of its given name (matching.blocking): the keys of that pass are filed
# again from each record's stored normalised form. Without the initial a block held every
# record of a common surname born in one year: on the 100,000-people benchmark population the
# candidate pairs went from 4.67 to 2.82 million, with the same true pairs among them and the
# same persons found. Going back files them as they were. Both rules are written out here, so
# that the migration files what its own version of the pass filed.

from django.db import migrations

from matching.blocking import key_for, pass_range

CHUNK = 5000


def _keys(norm: dict, with_initial: bool) -> set[int]:
    year = (norm.get("birth_date") or "")[:4]
    initial = (norm.get("given") or "")[:1]
    codes = [code for code in (norm.get("family_sx"), norm.get("family_sx_last")) if code] if year else []
    return {key_for("fam_year", f"{code}|{year}|{initial}" if with_initial else f"{code}|{year}") for code in codes}


def _refile(apps, schema_editor, with_initial: bool) -> None:
    from hie.bulk import insert_rows

    keys = apps.get_model("matching", "BlockingKey")
    low, high = pass_range("fam_year")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {keys._meta.db_table} WHERE key >= %s AND key < %s", [low, high])  # noqa: S608
    records = apps.get_model("matching", "PatientRecord").objects.order_by("pk").values_list("pk", "norm")
    rows = []
    for record_id, norm in records.iterator(chunk_size=CHUNK):
        rows += [(record_id, key) for key in sorted(_keys(norm, with_initial))]
        if len(rows) >= CHUNK * 10:
            insert_rows(keys, ("record_id", "key"), rows)
            rows = []
    insert_rows(keys, ("record_id", "key"), rows)


def with_given_initial(apps, schema_editor):
    _refile(apps, schema_editor, with_initial=True)


def without_given_initial(apps, schema_editor):
    _refile(apps, schema_editor, with_initial=False)


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0008_references_looked_up_through_composite_indexes"),
    ]

    operations = [
        migrations.RunPython(with_given_initial, without_given_initial),
    ]
