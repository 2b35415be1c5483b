"""Reading the index in bulk gives what Django's own reading gives."""

from datetime import date, timedelta

import pytest
from django.db import transaction

from matching.models import PatientRecord
from matching.selectors import norms_of
from matching.services import GOLDEN_FIELDS
from tests.matching.factories import organization, register


@pytest.mark.django_db
def test_norms_and_fields_read_in_bulk_equal_djangos_reading():
    org = organization()
    register(org, previous_family_names=["Oyelaran", "Smith-Diaz"], phones=["503-555-0142"])
    register(org, given_name="Ana", birth_date=date(2001, 2, 28), middle_name="Luz")
    register(org, given_name="", birth_date=None, address_line="")
    fields = [name for name in GOLDEN_FIELDS if name != "norm"]
    with transaction.atomic():
        locked = PatientRecord.objects.select_for_update(of=("self",)).order_by("pk")
        found = norms_of(locked, *fields)
    expected = [(pk, norm, *values) for pk, norm, *values in locked.values_list("pk", "norm", *fields)]
    assert found == expected
    assert [type(value) for value in found[0]] == [type(value) for value in expected[0]]
    assert found[0][2 + fields.index("previous_family_names")] == ["Oyelaran", "Smith-Diaz"]
    assert found[0][2 + fields.index("updated_at")].utcoffset() == timedelta(0)
    assert norms_of(PatientRecord.objects.filter(pk__in=[])) == []
