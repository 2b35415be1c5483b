"""Every audit event of the identity feed and of Patient reads names the patient's EUID, so each
lands in that patient's accounting of disclosures."""

import json

import pytest

from hie.audit.models import AuditEvent
from matching.models import PatientRecord
from matching.selectors import confirmed_person_of
from tests.fhir.conftest import patient

pytestmark = pytest.mark.django_db
FHIR = "application/fhir+json"


def last_event(event_type: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type).order_by("-sequence").first()


def test_feed_read_and_withdrawal_events_name_the_euid(client, member_headers):
    system, riverside = member_headers("Riverside")
    _, lakeside = member_headers("Lakeside")

    created = client.post("/fhir/Patient", json.dumps(patient(system, "RIV-1")), content_type=FHIR, **riverside)
    assert created.status_code == 201, created.content
    record = PatientRecord.objects.get(pk=int(created.json()["id"]))
    euid = confirmed_person_of(record).euid
    assert (last_event("patient-feed").action, last_event("patient-feed").person_euid) == ("C", euid)

    moved = patient(system, "RIV-1", birthDate="1984-07-20")
    updated = client.put(f"/fhir/Patient?identifier={system}|RIV-1", json.dumps(moved), content_type=FHIR,
                         **riverside)  # fmt: skip
    assert updated.status_code == 200
    assert (last_event("patient-feed").action, last_event("patient-feed").person_euid) == ("U", euid)

    assert client.get(f"/fhir/Patient/{record.pk}", **riverside).status_code == 200  # its own record
    assert last_event("patient-read").person_euid == euid
    assert client.get(f"/fhir/Patient/{record.pk}", **lakeside).status_code == 200  # another member's, consented
    assert last_event("patient-read").person_euid == euid
    assert client.get(f"/fhir/Patient/{euid}", **lakeside).status_code == 200  # the golden record
    assert last_event("patient-read").person_euid == euid

    assert client.delete(f"/fhir/Patient?identifier={system}|RIV-1", **riverside).status_code == 204
    assert last_event("patient-withdraw").person_euid == euid
