# The given_postal_split blocking pass (matching.blocking.SPLIT_PASSES) files each record again
# under its given_postal value with its birth year added, so that a given_postal block over the
# cap is paired within its birth-year blocks instead of being skipped. Records filed before the
# pass existed get their keys of it here, from their stored normalised form; going back removes
# them. The rule is written out here, so that the migration files what its own version of the
# pass filed.

from django.db import migrations

from matching.blocking import pass_range, split_key_for

CHUNK = 5000


def _keys(norm: dict) -> set[int]:
    year, postal, given = (norm.get("birth_date") or "")[:4], norm.get("postal"), norm.get("given_sx")
    return {split_key_for("given_postal", f"{given}|{postal}", year)} if year and postal and given else set()


def file_split_keys(apps, schema_editor):
    from hie.bulk import insert_rows

    keys = apps.get_model("matching", "BlockingKey")
    records = apps.get_model("matching", "PatientRecord").objects.order_by("pk").values_list("pk", "norm")
    rows = []
    for record_id, norm in records.iterator(chunk_size=CHUNK):
        rows += [(record_id, key) for key in sorted(_keys(norm))]
        if len(rows) >= CHUNK * 10:
            insert_rows(keys, ("record_id", "key"), rows)
            rows = []
    insert_rows(keys, ("record_id", "key"), rows)


def remove_split_keys(apps, schema_editor):
    keys = apps.get_model("matching", "BlockingKey")
    low, high = pass_range("given_postal_split")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {keys._meta.db_table} WHERE key >= %s AND key < %s", [low, high])  # noqa: S608


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0010_whole_json_kept_as_text"),
    ]

    operations = [
        migrations.RunPython(file_split_keys, remove_split_keys),
    ]
