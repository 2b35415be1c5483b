"""MHD ITI-65 as stock Document Sources send it: the subject as a Patient reference the node handed
out (PDQm, PIXm), a SubmissionSet List and Binary content answered with their locations, the List
stored and found again (ITI-66)."""

import base64
import uuid

import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.list import List as FhirList

from tests.fhir.conftest import patient
from tests.fhir.test_documents import PDF, document, register_patient, submit

MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"


def euid_url_of(member, local_id: str) -> str:
    """The fullUrl PDQm hands out for the member's patient: the person's absolute URL."""
    found = requests.get(f"{member.base}/fhir/Patient", params={"identifier": f"{member.system}|{local_id}"},
                         headers=member.headers(), timeout=10).json()  # fmt: skip
    return found["entry"][0]["fullUrl"]


def record_id_of(member, local_id: str) -> str:
    answer = requests.put(f"{member.base}/fhir/Patient", params={"identifier": f"{member.system}|{local_id}"},
                          json=_patient(member, local_id), headers=member.headers(), timeout=10)  # fmt: skip
    return answer.json()["id"]


def _patient(member, local_id: str) -> dict:
    return patient(member.system, local_id)


def with_subject(entry: dict, reference: str) -> dict:
    return {**entry, "resource": {**entry["resource"], "subject": {"reference": reference}}}


def submission_set(unique_id: str, *document_urls: str, **overrides) -> dict:
    resource = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": unique_id},
                       {"use": "usual", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
        "date": "2026-11-02T10:00:00Z",
        "entry": [{"item": {"reference": url}} for url in document_urls],
        **overrides,
    }  # fmt: skip
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource, "request": {"method": "POST", "url": "List"}}


def test_subject_as_a_record_id_or_the_persons_url(member):
    clinic = member("Clinic")
    register_patient(clinic, "C-1")
    by_id = with_subject(document(clinic, "C-1", "urn:oid:1.2.3.1"), f"Patient/{record_id_of(clinic, 'C-1')}")
    response = submit(clinic, by_id)
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"
    by_url = with_subject(document(clinic, "C-1", "urn:oid:1.2.3.2"), euid_url_of(clinic, "C-1"))
    assert submit(clinic, by_url).json()["entry"][0]["response"]["status"] == "201 Created"
    relative = with_subject(document(clinic, "C-1", "urn:oid:1.2.3.3"),
                            "Patient/" + euid_url_of(clinic, "C-1").rsplit("/", 1)[-1])  # fmt: skip
    assert submit(clinic, relative).status_code == 200
    found = requests.get(f"{clinic.base}/fhir/DocumentReference", headers=clinic.headers(), timeout=10,
                         params={"patient.identifier": f"{clinic.system}|C-1", "status": "current"})  # fmt: skip
    assert found.json()["total"] == 3


def test_another_members_record_of_the_same_person_names_the_submitters_own(member, settings):
    clinic, hospital = member("Clinic"), member("Hospital")
    register_patient(clinic, "C-1")
    hospital_record = record_id_of(hospital, "H-9")  # the same synthetic person: linked to the clinic's
    assert euid_url_of(hospital, "H-9") == euid_url_of(clinic, "C-1")
    entry = with_subject(document(clinic, "C-1", "urn:oid:1.2.3.4"), f"Patient/{hospital_record}")
    assert submit(clinic, entry).status_code == 200
    # Where consent hides the person from the clinic, the hospital's record names nobody to it,
    # exactly as an unknown record would; the clinic's own reference to the person still works.
    euid_url = euid_url_of(clinic, "C-1")
    settings.CONSENT_IMPLICIT_POLICY = "deny"
    hidden = submit(clinic, with_subject(document(clinic, "C-1", "urn:oid:1.2.3.5"), f"Patient/{hospital_record}"))
    unknown = submit(clinic, with_subject(document(clinic, "C-1", "urn:oid:1.2.3.6"), "Patient/999999"))
    assert hidden.status_code == unknown.status_code == 422
    assert hidden.json()["issue"][0]["diagnostics"] == unknown.json()["issue"][0]["diagnostics"]
    assert submit(clinic, with_subject(document(clinic, "C-1", "urn:oid:1.2.3.7"), euid_url)).status_code == 200


def test_a_subject_the_submitter_holds_no_record_of_is_422(member):
    clinic, hospital = member("Clinic"), member("Hospital")
    register_patient(clinic, "C-1")
    hospital_only = requests.put(f"{hospital.base}/fhir/Patient", params={"identifier": f"{hospital.system}|H-2"},
                                 headers=hospital.headers(), timeout=10,
                                 json={**_patient(hospital, "H-2"), "name": [{"family": "Oyelaran", "given": ["Tobi"]}],
                                       "birthDate": "2001-02-11", "telecom": [], "address": []}).json()  # fmt: skip
    for reference in (f"Patient/{hospital_only['id']}", "Patient/999999", "Patient/ENOSUCHPERSON",
                      "https://elsewhere.example/fhir/Patient/1", "Patient/1/_history/1"):  # fmt: skip
        response = submit(clinic, with_subject(document(clinic, "C-1", f"urn:oid:1.9.{uuid.uuid4().int % 999}"),
                                               reference))  # fmt: skip
        assert response.status_code in (400, 422), (reference, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"


def test_submission_set_and_binary_get_locations_and_the_list_is_stored(member):
    clinic, lab = member("Clinic"), member("Lab")
    register_patient(clinic, "C-1")
    binary = {"fullUrl": "urn:uuid:00000000-0000-4000-8000-00000000b001",
              "resource": {"resourceType": "Binary", "contentType": "application/pdf",
                           "data": base64.b64encode(PDF).decode()},
              "request": {"method": "POST", "url": "Binary"}}  # fmt: skip
    doc = document(clinic, "C-1", "urn:oid:1.2.3.9", data=None)
    doc["resource"]["content"][0]["attachment"]["url"] = binary["fullUrl"]
    listed = submission_set("urn:oid:1.2.3.9.100", doc["fullUrl"])
    response = submit(clinic, listed, doc, binary)
    assert response.status_code == 200, response.text
    answer = Bundle.model_validate_json(response.content)
    statuses = [(e.response.status, e.response.location) for e in answer.entry]
    assert all(status == "201 Created" for status, _ in statuses)
    list_location, doc_location, binary_location = (location for _, location in statuses)
    assert list_location.startswith("List/")
    assert doc_location.startswith("DocumentReference/")
    assert binary_location == f"Binary/{doc_location.split('/')[1]}"

    content = requests.get(f"{clinic.base}/fhir/{binary_location}", headers=lab.headers(), timeout=10)
    assert content.content == PDF
    read = requests.get(f"{clinic.base}/fhir/{list_location}", headers=lab.headers(), timeout=10)
    assert read.status_code == 200, read.text
    stored = FhirList.model_validate_json(read.content)
    assert stored.entry[0].item.reference == f"DocumentReference/{doc_location.split('/')[1]}"
    assert stored.identifier[0].value == "urn:oid:1.2.3.9.100"

    euid = euid_url_of(clinic, "C-1").rsplit("/", 1)[-1]
    for params in ({"patient": f"Patient/{euid}", "code": "submissionset", "status": "current"},
                   {"patient.identifier": f"{clinic.system}|C-1", "identifier": "urn:oid:1.2.3.9.100"}):  # fmt: skip
        found = requests.get(f"{clinic.base}/fhir/List", params=params, headers=lab.headers(), timeout=10)
        assert found.status_code == 200, found.text
        assert Bundle.model_validate_json(found.content).total == 1
    other_code = {"patient": f"Patient/{euid}", "code": "folder"}
    assert requests.get(f"{clinic.base}/fhir/List", params=other_code, headers=lab.headers(), timeout=10).json()[
        "total"] == 0  # fmt: skip

    again = Bundle.model_validate_json(submit(clinic, listed, doc, binary).content)
    assert [(e.response.status, e.response.location) for e in again.entry] == [
        ("200 OK", location) for _, location in statuses
    ]
    assert requests.get(f"{clinic.base}/fhir/List/999999", headers=lab.headers(), timeout=10).status_code == 404


def test_a_malformed_submission_set_is_refused(member):
    clinic = member("Clinic")
    register_patient(clinic, "C-1")
    doc = document(clinic, "C-1", "urn:oid:1.2.3.10")
    for listed in (submission_set("urn:oid:9.1", doc["fullUrl"], code=None),
                   submission_set("urn:oid:9.2", "urn:uuid:not-in-the-bundle"),
                   submission_set("urn:oid:9.3", doc["fullUrl"], mode="snapshot")):  # fmt: skip
        listed["resource"] = {k: v for k, v in listed["resource"].items() if v is not None}
        response = submit(clinic, listed, doc)
        assert response.status_code == 400, response.text
    orphan = {"fullUrl": "urn:uuid:orphan", "resource": {"resourceType": "Binary", "contentType": "text/plain",
              "data": "eA=="}, "request": {"method": "POST", "url": "Binary"}}  # fmt: skip
    assert submit(clinic, doc, orphan).status_code == 400
