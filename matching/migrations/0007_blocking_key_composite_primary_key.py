# A blocking key is identified by its record and its value: the surrogate id column, whose
# sequence a bulk load called once per key, is dropped. Django cannot alter a primary key into a
# composite one, so the keys are set aside in a temporary table, the table is made again and the
# keys are put back; going back does the same the other way.

import django.db.models.deletion
from django.db import migrations, models

SET_ASIDE = "CREATE TEMPORARY TABLE blocking_key_moving AS SELECT record_id, key FROM matching_blockingkey"
PUT_BACK = [
    "INSERT INTO matching_blockingkey (record_id, key) SELECT record_id, key FROM blocking_key_moving",
    "DROP TABLE blocking_key_moving",
]


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0006_pending_match"),
    ]

    operations = [
        migrations.RunSQL(SET_ASIDE, reverse_sql=PUT_BACK),
        migrations.DeleteModel(name="BlockingKey"),
        migrations.CreateModel(
            name="BlockingKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "record_id", "key", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("key", models.BigIntegerField()),
                (
                    "record",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="blocking_keys",
                        to="matching.patientrecord",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["key", "record"], name="blocking_key_block")],
            },
        ),
        migrations.RunSQL(PUT_BACK, reverse_sql=SET_ASIDE),
    ]
