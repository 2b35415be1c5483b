# Records waiting to be matched move from a column of the record (match_state) to a narrow table
# of their own, PendingMatch: one row per waiting record, since when it waits. Going back marks
# every record matched but those with a row.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0005_blocking_keys_as_integers"),
    ]

    operations = [
        migrations.CreateModel(
            name="PendingMatch",
            fields=[
                (
                    "record",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="pending",
                        serialize=False,
                        to="matching.patientrecord",
                    ),
                ),
                ("since", models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.RunSQL(
            "INSERT INTO matching_pendingmatch (record_id, since)"
            " SELECT id, updated_at FROM matching_patientrecord WHERE match_state = 'pending'",
            "UPDATE matching_patientrecord SET match_state = CASE WHEN id IN"
            " (SELECT record_id FROM matching_pendingmatch) THEN 'pending' ELSE 'done' END",
        ),
        migrations.RemoveIndex(
            model_name="patientrecord",
            name="matching_pa_match_s_e7ead5_idx",
        ),
        migrations.RemoveField(
            model_name="patientrecord",
            name="match_state",
        ),
    ]
