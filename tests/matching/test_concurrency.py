"""Two records of one person matched at the same moment by two worker processes make one person."""

from datetime import date, timedelta

import pytest
from django.db import transaction

from matching.models import Link, LinkState, PendingMatch, Person
from tests.conftest import wait_for
from tests.matching.factories import organization, register

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
GIVEN = ["Ysolde", "Bartholomew", "Ingrid", "Cosmo", "Leocadia", "Thaddeus", "Rosalind", "Evander", "Philippa",
         "Lysander", "Guinevere", "Octavian"]  # fmt: skip
FAMILY = ["Vantongeren", "Okonkwo", "Haraldsen", "Przybylski", "Achterberg", "Moreau", "Castellanos", "Nakagawa",
          "Fitzgibbon", "Abernathy", "Kowalczyk", "Delacroix"]  # fmt: skip
PAIRS = len(GIVEN)


def test_concurrent_records_of_one_person_make_one_person(celery_worker):
    org_a, org_b = organization(), organization()
    with transaction.atomic():
        for n in range(PAIRS):
            born = date(1950, 1, 1) + timedelta(days=397 * n)
            person = {"given_name": GIVEN[n], "family_name": FAMILY[n], "birth_date": born,
                      "ssn": f"5{n:02d}-4{n % 10}-{3000 + 17 * n}", "address_line": f"{100 + n} Oak Hollow Rd",
                      "postal_code": f"970{n:02d}"}  # fmt: skip
            # Enqueued one after the other at commit, so the two worker processes take each
            # pair's two records at the same moment.
            register(org_a, f"A{n}", **person)
            register(org_b, f"B{n}", **person)

    wait_for(lambda: not PendingMatch.objects.exists(), timeout=60)
    assert Person.objects.filter(links__state=LinkState.MATCH).distinct().count() == PAIRS
    for n in range(PAIRS):
        persons = set(
            Link.objects.filter(record__local_id__in=[f"A{n}", f"B{n}"], state=LinkState.MATCH).values_list(
                "person_id", flat=True
            )
        )
        assert len(persons) == 1
