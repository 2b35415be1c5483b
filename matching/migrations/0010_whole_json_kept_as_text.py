"""Normalised forms, golden records and explanations are kept as text on PostgreSQL (WholeJSONField).

Only PostgreSQL's column types change: SQLite keeps every JSONField as text already. Text back
to jsonb needs the cast written out.
"""

from django.db import migrations

import matching.models

# (model, field): each one's column is the field's name in the table matching_<model>.
FIELDS = (
    ("link", "contributions"),
    ("patientrecord", "norm"),
    ("person", "golden"),
    ("reviewcandidate", "explanation"),
)


def to_text(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for model, column in FIELDS:
            schema_editor.execute(f'ALTER TABLE "matching_{model}" ALTER COLUMN "{column}" TYPE text')


def to_jsonb(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for model, column in FIELDS:
            schema_editor.execute(
                f'ALTER TABLE "matching_{model}" ALTER COLUMN "{column}" TYPE jsonb USING "{column}"::jsonb'
            )


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0009_family_year_keys_with_given_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(to_text, to_jsonb)],
            state_operations=[
                migrations.AlterField(
                    model_name=model,
                    name=name,
                    field=matching.models.WholeJSONField(default=dict, blank=name != "explanation"),
                )
                for model, name in FIELDS
            ],
        ),
    ]
