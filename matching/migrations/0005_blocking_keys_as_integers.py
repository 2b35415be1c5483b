# Blocking keys become integers (matching.blocking.key_for): the keys in place are dropped, the
# column changes type, and every record is filed again from its stored normalised form. Going
# back drops the keys, which the earlier code would then have to file again.

from django.db import migrations, models

CHUNK = 5000


def drop_keys(apps, schema_editor):
    apps.get_model("matching", "BlockingKey").objects.all().delete()


def file_every_record(apps, schema_editor):
    from hie.bulk import insert_rows
    from matching.blocking import blocking_keys

    records = apps.get_model("matching", "PatientRecord").objects.order_by("pk").values_list("pk", "norm")
    rows = []
    for record_id, norm in records.iterator(chunk_size=CHUNK):
        rows += [(record_id, key) for key in blocking_keys(norm)]
        if len(rows) >= CHUNK * 10:
            insert_rows(apps.get_model("matching", "BlockingKey"), ("record_id", "key"), rows)
            rows = []
    insert_rows(apps.get_model("matching", "BlockingKey"), ("record_id", "key"), rows)


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0004_blocking_key_reference_unchecked"),
    ]

    operations = [
        migrations.RunPython(drop_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="blockingkey",
            name="key",
            field=models.BigIntegerField(),
        ),
        migrations.RunPython(file_every_record, drop_keys),
    ]
