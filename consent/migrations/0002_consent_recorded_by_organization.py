import django.db.models.deletion
from django.db import migrations, models


def members_recorded_what_they_collected(apps, schema_editor) -> None:
    # Until now the API set collected_by to the recording member and the console set recorded_by
    # to a staff user: a consent with a collector and no staff user came through the API.
    Consent = apps.get_model("consent", "Consent")
    for consent in Consent.objects.filter(recorded_by__isnull=True, collected_by__isnull=False):
        consent.recorded_by_organization_id = consent.collected_by_id
        consent.save(update_fields=["recorded_by_organization"])


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0001_initial"),
        ("orgs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="consent",
            name="recorded_by_organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="recorded_consents",
                to="orgs.organization",
            ),
        ),
        migrations.RunPython(members_recorded_what_they_collected, migrations.RunPython.noop),
    ]
