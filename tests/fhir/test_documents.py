"""MHD through the real server: register (ITI-65), find (ITI-67) and retrieve (ITI-68) documents
across members, with consent applied per custodian and per security label."""

import base64
import hashlib

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from consent.models import MemberPolicy
from hie.audit.models import AuditEvent
from hie.locator.models import CustodianAccess, DocumentEntry, DocumentStatus
from tests.fhir.conftest import patient
from tests.fhir.custodian import CLIENT_ID, CLIENT_SECRET

PDF = b"%PDF-1.7 synthetic discharge summary"
LOINC = "http://loinc.org"
FORMAT_SYSTEM = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
FORMAT = "urn:ihe:iti:xds:2017:mimeTypeSufficient"


def sha1_of(content: bytes) -> bytes:
    return hashlib.sha1(content, usedforsecurity=False).digest()  # FHIR R4 Attachment.hash is SHA-1


def register_patient(member, local_id: str) -> None:
    response = requests.put(f"{member.base}/fhir/Patient", params={"identifier": f"{member.system}|{local_id}"},
                            json=patient(member.system, local_id), headers=member.headers(), timeout=10)  # fmt: skip
    assert response.status_code in (200, 201), response.text


def document(member, local_id: str, master: str, *, data: bytes | None = PDF, url: str = "", size: int | None = None,
             sha1: bytes | None = None, labels: tuple = (), type_code: str = "18842-5", **extra) -> dict:  # fmt: skip
    attachment = {"contentType": "application/pdf", "title": "Discharge summary"}
    if data is not None:
        attachment["data"] = base64.b64encode(data).decode()
    if url:
        attachment |= {"url": url, "size": size, "hash": base64.b64encode(sha1).decode()}
    resource = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": type_code}]},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                                  "code": "clinical-note"}]}],
        "subject": {"identifier": {"system": member.system, "value": local_id}},
        "date": "2026-11-02T10:00:00Z",
        "contained": [{"resourceType": "Practitioner", "id": "a1", "name": [{"family": "Okafor", "given": ["Ada"]}]}],
        "author": [{"reference": "#a1"}],
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c}]}
                          for c in labels],
        "content": [{"attachment": attachment, "format": {"system": FORMAT_SYSTEM, "code": FORMAT}}],
        "context": {"period": {"start": "2026-10-30", "end": "2026-11-02"}},
        **extra,
    }  # fmt: skip
    return {"fullUrl": f"urn:uuid:{hashlib.md5(master.encode()).hexdigest()}", "resource": resource,  # noqa: S324
            "request": {"method": "POST", "url": "DocumentReference"}}  # fmt: skip


def submit(member, *entries: dict) -> requests.Response:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}
    return requests.post(f"{member.base}/fhir", json=bundle, headers=member.headers(), timeout=10)


def find(member, purpose: str = "TREAT", **params) -> requests.Response:
    params.setdefault("status", "current")
    return requests.get(f"{member.base}/fhir/DocumentReference", params=params, headers=member.headers(purpose),
                        timeout=10)  # fmt: skip


def entries(response: requests.Response) -> list:
    assert response.status_code == 200, response.text
    return Bundle.model_validate_json(response.content).entry or []


def test_register_by_value_then_find_and_retrieve_through_the_node(member):
    clinic = member("Clinic")
    register_patient(clinic, "C-1")
    response = submit(clinic, document(clinic, "C-1", "urn:uuid:doc-1"))
    assert response.status_code == 200, response.text
    answer = Bundle.model_validate_json(response.content)
    assert answer.type == "transaction-response"
    assert answer.entry[0].response.status == "201 Created"
    again = Bundle.model_validate_json(submit(clinic, document(clinic, "C-1", "urn:uuid:doc-1")).content)
    assert again.entry[0].response.status == "200 OK"  # idempotent: the same document, not a second one
    assert again.entry[0].response.location == answer.entry[0].response.location
    assert DocumentEntry.objects.count() == 1

    found = entries(find(clinic, **{"patient.identifier": f"{clinic.system}|C-1"}))
    assert len(found) == 1
    reference = found[0].resource
    assert reference.custodian.display == "Clinic"
    url = reference.content[0].attachment.url
    assert url.startswith(f"{clinic.base}/fhir/Binary/")
    content = requests.get(url, headers=clinic.headers(), timeout=10)
    assert content.status_code == 200
    assert content.content == PDF
    assert content.headers["Content-Type"] == "application/pdf"
    assert AuditEvent.objects.filter(event_type="document-retrieve").count() == 1


def test_one_bad_entry_rejects_the_whole_transaction_naming_it(member):
    clinic = member("Clinic")
    register_patient(clinic, "C-1")
    bad = document(clinic, "C-1", "urn:uuid:doc-2", data=None)  # neither data nor url
    response = submit(clinic, document(clinic, "C-1", "urn:uuid:doc-1"), bad)
    assert response.status_code == 400
    outcome = OperationOutcome.model_validate_json(response.content)
    assert "Bundle.entry[1]" in outcome.issue[0].diagnostics
    assert not DocumentEntry.objects.exists()
    unknown_patient = submit(clinic, document(clinic, "NOBODY", "urn:uuid:doc-3"))
    assert unknown_patient.status_code == 422
    other = member("Other")
    foreign = submit(other, document(clinic, "C-1", "urn:uuid:doc-4"))  # another member's namespace
    assert foreign.status_code == 403


def test_find_covers_every_member_holding_records_of_the_person(member, custodian_server):
    riverside, lakeside, lab = member("Riverside"), member("Lakeside"), member("Metro Lab")
    for m, local_id in ((riverside, "R-1"), (lakeside, "L-1"), (lab, "M-1")):
        register_patient(m, local_id)
    held = custodian_server()
    held.documents["lab-1"] = b"lab result body"
    lab.organization.fhir_endpoint = f"{held.base}/r4"
    lab.organization.save()
    CustodianAccess.objects.create(organization=lab.organization, token_url=f"{held.base}/token",
                                   client_id=CLIENT_ID, client_secret=CLIENT_SECRET)  # fmt: skip
    body = held.documents["lab-1"]
    assert submit(riverside, document(riverside, "R-1", "urn:uuid:r")).status_code == 200
    assert submit(lakeside, document(lakeside, "L-1", "urn:uuid:l", type_code="11506-3")).status_code == 200
    by_reference = document(
        lab,
        "M-1",
        "urn:uuid:m",
        data=None,
        url=held.url("lab-1"),
        size=len(body),
        sha1=sha1_of(body),
        type_code="11502-2",
    )
    assert submit(lab, by_reference).status_code == 200, "by reference"

    found = entries(find(riverside, **{"patient.identifier": f"{riverside.system}|R-1"}))
    assert {e.resource.custodian.display for e in found} == {"Riverside", "Lakeside", "Metro Lab"}
    only_labs = entries(
        find(riverside, **{"patient.identifier": f"{riverside.system}|R-1", "type": f"{LOINC}|11502-2"})
    )
    assert [e.resource.custodian.display for e in only_labs] == ["Metro Lab"]
    by_author = entries(find(riverside, **{"patient.identifier": f"{riverside.system}|R-1", "author.family": "Okafor",
                                           "period": "ge2026-11-01", "_count": "2"}))  # fmt: skip
    assert len(by_author) == 2
    paged = find(riverside, **{"patient.identifier": f"{riverside.system}|R-1", "_count": "2"})
    assert Bundle.model_validate_json(paged.content).total == 3
    assert any(link.relation == "next" for link in Bundle.model_validate_json(paged.content).link)

    url = only_labs[0].resource.content[0].attachment.url
    fetched = requests.get(url, headers=riverside.headers(), timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == body
    assert held.requests == ["/r4/Binary/lab-1"]  # fetched by the node, with the node's credentials

    held.faults["lab-1"] = "wrong"
    assert requests.get(url, headers=riverside.headers(), timeout=10).status_code == 502
    held.faults["lab-1"] = "500"
    failed = requests.get(url, headers=riverside.headers(), timeout=10)
    assert failed.status_code == 502
    assert OperationOutcome.model_validate_json(failed.content).issue[0].code == "transient"


@pytest.mark.parametrize(("fault", "status"), [("slow", 504), ("refused", 502)])
def test_a_custodian_that_does_not_answer_gives_a_gateway_error(member, custodian_server, settings, fault, status):
    settings.CUSTODIAN_TIMEOUT_SECONDS = 0.5
    clinic, lab = member("Clinic"), member("Lab")
    register_patient(clinic, "C-1")
    register_patient(lab, "M-1")
    held = custodian_server()
    held.documents["d"] = b"x" * 10
    held.faults["d"] = fault
    lab.organization.fhir_endpoint = f"{held.base}/r4"
    lab.organization.save()
    CustodianAccess.objects.create(organization=lab.organization, token_url=f"{held.base}/token",
                                   client_id=CLIENT_ID, client_secret=CLIENT_SECRET)  # fmt: skip
    submit(lab, document(lab, "M-1", "urn:uuid:d", data=None, url=held.url("d"), size=10,
                         sha1=sha1_of(b"x" * 10)))  # fmt: skip
    (entry,) = entries(find(clinic, **{"patient.identifier": f"{clinic.system}|C-1"}))
    if fault == "refused":
        CustodianAccess.objects.all().delete()
        entry_row = DocumentEntry.objects.get()
        entry_row.url = "http://127.0.0.1:9/r4/Binary/d"  # nothing listens on the discard port
        entry_row.save()
    response = requests.get(entry.resource.content[0].attachment.url, headers=clinic.headers(), timeout=10)
    assert response.status_code == status
    OperationOutcome.model_validate_json(response.content)


def test_consent_filters_by_custodian_and_by_security_label(member):
    clinic, hospital, requester = member("Clinic"), member("Hospital"), member("Requester")
    for m, local_id in ((clinic, "C-1"), (hospital, "H-1"), (requester, "Q-1")):
        register_patient(m, local_id)
    submit(clinic, document(clinic, "C-1", "urn:uuid:normal"))
    submit(clinic, document(clinic, "C-1", "urn:uuid:psych", labels=["PSY"]))
    submit(hospital, document(hospital, "H-1", "urn:uuid:hospital"))
    query = {"patient.identifier": f"{requester.system}|Q-1"}
    visible = entries(find(requester, **query))
    assert {e.resource.masterIdentifier.value for e in visible} == {"urn:uuid:normal", "urn:uuid:hospital"}
    assert Bundle.model_validate_json(find(requester, **query).content).total == 2  # the PSY note is not counted

    MemberPolicy.objects.create(organization=hospital.organization, policy="deny")  # the hospital shares on opt-in
    visible = entries(find(requester, **query))
    assert {e.resource.masterIdentifier.value for e in visible} == {"urn:uuid:normal"}
    hidden = DocumentEntry.objects.get(master_value="urn:uuid:hospital")
    read = requests.get(f"{requester.base}/fhir/DocumentReference/{hidden.pk}", headers=requester.headers(), timeout=10)
    assert read.status_code == 404  # hidden answers as unknown, never 403
    content = requests.get(f"{requester.base}/fhir/Binary/{hidden.pk}", headers=requester.headers(), timeout=10)
    assert content.status_code == 404
    assert AuditEvent.objects.filter(event_type="authz-consent").exists()


def test_replaces_supersedes_the_earlier_entry(member):
    clinic = member("Clinic")
    register_patient(clinic, "C-1")
    submit(clinic, document(clinic, "C-1", "urn:uuid:v1"))
    first = DocumentEntry.objects.get()
    replaces = [{"code": "replaces", "target": {"reference": f"DocumentReference/{first.pk}"}}]
    replacement = document(clinic, "C-1", "urn:uuid:v2", data=b"%PDF corrected", relatesTo=replaces)
    assert submit(clinic, replacement).status_code == 200
    first.refresh_from_db()
    assert first.status == DocumentStatus.SUPERSEDED
    query = {"patient.identifier": f"{clinic.system}|C-1"}
    assert [e.resource.masterIdentifier.value for e in entries(find(clinic, **query))] == ["urn:uuid:v2"]
    both = entries(find(clinic, **query, status="current,superseded"))
    assert len(both) == 2


def test_find_needs_a_status_and_a_patient(member):
    clinic = member("Clinic")
    no_status = requests.get(f"{clinic.base}/fhir/DocumentReference", params={"patient": "Patient/E1"},
                             headers=clinic.headers(), timeout=10)  # fmt: skip
    assert no_status.status_code == 400
    assert "status" in OperationOutcome.model_validate_json(no_status.content).issue[0].diagnostics
    unknown = find(clinic, **{"patient.identifier": f"{clinic.system}|NOBODY"})
    assert Bundle.model_validate_json(unknown.content).total == 0
    form_headers = {k: v for k, v in clinic.headers().items() if k != "Content-Type"}
    query = {"patient.identifier": f"{clinic.system}|NOBODY", "status": "current"}
    form = requests.post(f"{clinic.base}/fhir/DocumentReference/_search", data=query, headers=form_headers, timeout=10)
    assert form.status_code == 200
