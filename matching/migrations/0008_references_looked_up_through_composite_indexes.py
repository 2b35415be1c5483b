# The references of records (to their organization), links and link events are looked up through composite indexes that begin
# with them, so their own single-column indexes go. Django finds the index to drop by its
# column, and would take the partial unique index on a link's record (one current person per
# record) with it: that constraint is removed first and made again after.

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Q

ONE_CURRENT_PERSON = models.UniqueConstraint(
    fields=["record"],
    condition=Q(state__in=["match", "possible_match"]),
    name="link_one_current_person_per_record",
)


class Migration(migrations.Migration):
    dependencies = [
        ("matching", "0007_blocking_key_composite_primary_key"),
    ]

    operations = [
        migrations.AlterField(
            model_name="patientrecord",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="patient_records",
                to="orgs.organization",
            ),
        ),
        migrations.RemoveConstraint(model_name="link", name="link_one_current_person_per_record"),
        migrations.AlterField(
            model_name="link",
            name="person",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="links", to="matching.person"
            ),
        ),
        migrations.AlterField(
            model_name="link",
            name="record",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="links",
                to="matching.patientrecord",
            ),
        ),
        migrations.AlterField(
            model_name="linkevent",
            name="record",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="link_events",
                to="matching.patientrecord",
            ),
        ),
        migrations.AddConstraint(model_name="link", constraint=ONE_CURRENT_PERSON),
    ]
