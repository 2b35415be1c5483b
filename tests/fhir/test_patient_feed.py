"""The patient identity feed (PIXm ITI-104 style) over real HTTP."""

import pytest
import requests
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhirpy.base.exceptions import ForbiddenError
from fhirpy.base.exceptions import OperationOutcome as OutcomeError

from hie.audit.models import AuditEvent
from hie.fhir.patient import euid_system
from matching.models import ChangeKind, LinkChange, PatientRecord
from tests.fhir.conftest import patient


def euid_of(resource: dict) -> str | None:
    return next((i["value"] for i in resource.get("identifier", []) if i["system"] == euid_system()), None)


def test_create_stores_the_record_and_answers_with_its_enterprise_id(member):
    riverside = member("Riverside")
    response = requests.post(f"{riverside.base}/fhir/Patient", json=patient(riverside.system, "RIV-1"),
                             headers=riverside.headers(), timeout=10)  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    stored = Patient.model_validate_json(response.content)
    assert response.headers["ETag"] == 'W/"1"'
    assert stored.meta.versionId == "1"
    assert response.headers["Location"] == f"/fhir/Patient/{stored.id}/_history/1"
    assert euid_of(response.json()) is not None
    record = PatientRecord.objects.get(pk=int(stored.id))
    assert (record.family_name, record.middle_name, record.phones) == ("Quintanilla", "Ines", ["(503) 555-0142"])
    assert AuditEvent.objects.filter(event_type="patient-feed", resource_id=stored.id, action="C").exists()

    again = requests.post(f"{riverside.base}/fhir/Patient", json=patient(riverside.system, "RIV-1"),
                          headers=riverside.headers(), timeout=10)  # fmt: skip
    assert again.status_code == 409
    assert OperationOutcome.model_validate_json(again.content).issue[0].code == "conflict"


def test_conditional_update_creates_then_updates_with_fhirpy(member):
    riverside = member("Riverside")
    client = riverside.fhir()
    created, was_created = (
        client.resources("Patient")
        .search(identifier=f"{riverside.system}|RIV-7")
        .update(client.resource("Patient", **patient(riverside.system, "RIV-7")))
    )
    assert was_created is True
    moved = patient(riverside.system, "RIV-7", address=[{"line": ["77 Birch Ln"], "city": "Gresham", "state": "OR",
                                                        "postalCode": "97030"}])  # fmt: skip
    updated, was_created = (
        client.resources("Patient")
        .search(identifier=f"{riverside.system}|RIV-7")
        .update(client.resource("Patient", **moved))
    )
    assert was_created is False
    assert updated["id"] == created["id"]
    assert updated["meta"]["versionId"] == "2"
    assert updated["address"][0]["city"] == "Gresham"
    assert euid_of(updated) == euid_of(created)


def test_if_match_guards_updates(member):
    riverside = member("Riverside")
    url = f"{riverside.base}/fhir/Patient?identifier={riverside.system}|RIV-9"
    first = requests.put(url, json=patient(riverside.system, "RIV-9"), headers=riverside.headers(), timeout=10)
    assert first.status_code == 201
    stale = requests.put(url, json=patient(riverside.system, "RIV-9", gender="other"),
                         headers=riverside.headers(**{"If-Match": 'W/"7"'}), timeout=10)  # fmt: skip
    assert stale.status_code == 412
    assert OperationOutcome.model_validate_json(stale.content).issue[0].severity == "error"
    fresh = requests.put(url, json=patient(riverside.system, "RIV-9", gender="other"),
                         headers=riverside.headers(**{"If-Match": first.headers["ETag"]}), timeout=10)  # fmt: skip
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] == 'W/"2"'
    by_id = requests.put(f"{riverside.base}/fhir/Patient/{first.json()['id']}",
                         json=patient(riverside.system, "RIV-9", gender="male"),
                         headers=riverside.headers(**{"If-Match": 'W/"2"'}), timeout=10)  # fmt: skip
    assert by_id.status_code == 200
    assert by_id.json()["gender"] == "male"
    read = requests.get(f"{riverside.base}/fhir/Patient/{first.json()['id']}", headers=riverside.headers(), timeout=10)
    assert read.headers["ETag"] == 'W/"3"'


def test_a_member_cannot_write_in_another_members_namespace(member):
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = lakeside.fhir()
    with pytest.raises(ForbiddenError, match="own identifier systems"):
        client.resources("Patient").search(identifier=f"{riverside.system}|RIV-1").update(
            client.resource("Patient", **patient(riverside.system, "RIV-1"))
        )
    posted = requests.post(f"{lakeside.base}/fhir/Patient", json=patient(riverside.system, "RIV-1"),
                           headers=lakeside.headers(), timeout=10)  # fmt: skip
    assert posted.status_code == 403
    record = PatientRecord.objects.create(organization=riverside.organization, identifier_system=riverside.system,
                                          local_id="RIV-2", source="fhir")  # fmt: skip
    by_id = requests.put(f"{lakeside.base}/fhir/Patient/{record.pk}", json=patient(riverside.system, "RIV-2"),
                         headers=lakeside.headers(), timeout=10)  # fmt: skip
    assert by_id.status_code == 403
    assert not PatientRecord.objects.filter(organization=lakeside.organization).exists()
    refusals = AuditEvent.objects.filter(event_type="patient-type", outcome="4", organization=lakeside.organization)
    assert refusals.count() == 2


def test_bad_input_is_an_operation_outcome_and_nothing_is_stored(member):
    riverside = member("Riverside")
    url = f"{riverside.base}/fhir/Patient"
    cases = [
        (b"{not json", 400),
        (b'{"resourceType": "Observation"}', 400),
        (patient(riverside.system, "X1", birthDate="1984-13-45"), 400),
        (patient(riverside.system, "X2", gender="mal"), 422),
        (patient(riverside.system, "X3", birthDate="2999-01-01"), 422),
        (patient("http://hl7.org/fhir/sid/us-ssn", "123-45-6789"), 422),
    ]
    for body, status in cases:
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        response = requests.post(url, headers=riverside.headers(), timeout=10, **kwargs)
        assert response.status_code == status, (body, response.text)
        assert "1984" not in response.text  # errors say where, never echo the values
        OperationOutcome.model_validate_json(response.content)
    assert not PatientRecord.objects.exists()


def test_delete_by_identifier_withdraws_the_record_but_keeps_it(member):
    riverside = member("Riverside")
    client = riverside.fhir()
    client.resources("Patient").search(identifier=f"{riverside.system}|RIV-3").update(
        client.resource("Patient", **patient(riverside.system, "RIV-3"))
    )
    client.resources("Patient").search(identifier=f"{riverside.system}|RIV-3").delete()
    record = PatientRecord.objects.get(local_id="RIV-3")
    assert record.active is False
    assert record.version == 2
    assert LinkChange.objects.filter(kind=ChangeKind.RETIRE_RECORD, events__record=record).exists()
    missing = requests.delete(f"{riverside.base}/fhir/Patient?identifier={riverside.system}|NOPE",
                              headers=riverside.headers(), timeout=10)  # fmt: skip
    assert missing.status_code == 404


def test_replaced_by_link_merges_at_the_source(member):
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = riverside.fhir()
    # Two registrations of one patient at Riverside that differ too much to match automatically.
    survivor = client.resource("Patient", **patient(riverside.system, "RIV-NEW"))
    client.resources("Patient").search(identifier=f"{riverside.system}|RIV-NEW").update(survivor)
    old = patient(riverside.system, "RIV-OLD", name=[{"family": "Quintanilla-Reyes", "given": ["Mari"]}],
                  birthDate="1984-09-17", telecom=[{"system": "phone", "value": "503-555-0199"}],
                  address=[{"line": ["9 Elm St"], "city": "Salem", "state": "OR", "postalCode": "97301"}])  # fmt: skip
    old_saved, _ = (
        client.resources("Patient")
        .search(identifier=f"{riverside.system}|RIV-OLD")
        .update(client.resource("Patient", **old))
    )
    # Lakeside's record of the old registration follows it.
    lake = lakeside.fhir()
    lake_saved, _ = (
        lake.resources("Patient")
        .search(identifier=f"{lakeside.system}|LAKE-1")
        .update(lake.resource("Patient", **{**old, "identifier": [{"system": lakeside.system, "value": "LAKE-1"}]}))
    )
    assert euid_of(lake_saved) == euid_of(old_saved) != euid_of(survivor_view(client, riverside))

    merged = {**old, "active": False, "link": [{"type": "replaced-by", "other": {
        "identifier": {"system": riverside.system, "value": "RIV-NEW"}}}]}  # fmt: skip
    answer, was_created = (
        client.resources("Patient")
        .search(identifier=f"{riverside.system}|RIV-OLD")
        .update(client.resource("Patient", **merged))
    )
    assert was_created is False
    assert answer["active"] is False
    surviving_euid = euid_of(survivor_view(client, riverside))
    assert euid_of(answer) == surviving_euid
    lake_now = lake.resources("Patient").search(_id=surviving_euid).fetch_raw()
    identifiers = {(i["system"], i["value"]) for i in lake_now["entry"][0]["resource"]["identifier"]}
    assert (lakeside.system, "LAKE-1") in identifiers
    assert (riverside.system, "RIV-NEW") in identifiers
    assert (riverside.system, "RIV-OLD") not in identifiers
    assert LinkChange.objects.filter(kind=ChangeKind.SOURCE_MERGE).exists()

    unknown = {**merged, "link": [{"type": "replaced-by", "other": {
        "identifier": {"system": riverside.system, "value": "RIV-NONE"}}}]}  # fmt: skip
    with pytest.raises(OutcomeError, match="surviving patient is not registered"):
        client.resources("Patient").search(identifier=f"{riverside.system}|RIV-OLD").update(
            client.resource("Patient", **unknown)
        )


def survivor_view(client, riverside) -> dict:
    return (
        client.resources("Patient").search(identifier=f"{riverside.system}|RIV-NEW").fetch_raw()["entry"][0]["resource"]
    )
