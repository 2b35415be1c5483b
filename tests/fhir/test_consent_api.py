"""Recording, reading, changing and searching consents through FHIR Consent, over real HTTP."""

import base64

import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from hie.fhir.consent import ACT_CODE
from tests.fhir.conftest import patient

SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"


def opt_out(system: str, value: str, form: bytes | None = None) -> dict:
    resource = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": system, "value": value}},
        "dateTime": "2026-11-20T10:00:00+00:00",
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT"}]},
        "provision": {"type": "deny", "provision": [{"type": "permit", "purpose": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]}]},
    }  # fmt: skip
    if form is not None:
        resource["sourceAttachment"] = {"contentType": "application/pdf", "data": base64.b64encode(form).decode()}
    return resource


def test_a_consent_recorded_read_withdrawn_and_found(member):
    riverside, lakeside = member("Riverside"), member("Lakeside")
    client = riverside.fhir()
    client.resources("Patient").search(identifier=f"{riverside.system}|R1").update(
        client.resource("Patient", **patient(riverside.system, "R1"))
    )
    lake = lakeside.fhir()
    lake.resources("Patient").search(identifier=f"{lakeside.system}|L1").update(
        lake.resource("Patient", **patient(lakeside.system, "L1"))
    )
    created = requests.post(f"{riverside.base}/fhir/Consent", json=opt_out(riverside.system, "R1", b"%PDF-1.4 form"),
                            headers=riverside.headers(), timeout=10)  # fmt: skip
    assert created.status_code == 201, created.text
    consent = Consent.model_validate_json(created.content)
    assert consent.provision.type == "deny"
    assert consent.provision.provision[0].purpose[0].code == "ETREAT"

    # Riverside finds its consent; Lakeside, through its own identifier of the same person, does not
    # (it would learn where else the patient is registered), but the opt-out refuses it.
    own = requests.get(f"{riverside.base}/fhir/Consent", params={"patient.identifier": f"{riverside.system}|R1"},
                       headers=riverside.headers(), timeout=10)  # fmt: skip
    assert Bundle.model_validate_json(own.content).total == 1
    found = requests.get(f"{lakeside.base}/fhir/Consent", params={"patient.identifier": f"{lakeside.system}|L1"},
                         headers=lakeside.headers(), timeout=10)  # fmt: skip
    assert Bundle.model_validate_json(found.content).total == 0
    search = {"family": "Quintanilla"}
    assert requests.get(f"{lakeside.base}/fhir/Patient", params=search, headers=lakeside.headers(),
                        timeout=10).json()["total"] == 0  # fmt: skip
    emergency = lakeside.headers("ETREAT")
    assert requests.get(f"{lakeside.base}/fhir/Patient", params=search, headers=emergency,
                        timeout=10).json()["total"] == 1  # fmt: skip

    form = requests.get(f"{riverside.base}/fhir/Consent/{consent.id}/form", headers=riverside.headers(), timeout=10)
    assert form.content == b"%PDF-1.4 form"

    withdrawn = {**opt_out(riverside.system, "R1"), "status": "inactive"}
    stale = requests.put(f"{riverside.base}/fhir/Consent/{consent.id}", json=withdrawn,
                         headers=riverside.headers(**{"If-Match": 'W/"9"'}), timeout=10)  # fmt: skip
    assert stale.status_code == 412
    changed = requests.put(f"{riverside.base}/fhir/Consent/{consent.id}", json=withdrawn,
                           headers=riverside.headers(**{"If-Match": 'W/"1"'}), timeout=10)  # fmt: skip
    assert changed.status_code == 200
    assert changed.headers["ETag"] == 'W/"2"'
    first = requests.get(f"{riverside.base}/fhir/Consent/{consent.id}/_history/1", headers=riverside.headers(),
                         timeout=10)  # fmt: skip
    assert Consent.model_validate_json(first.content).status == "active"
    assert requests.get(f"{lakeside.base}/fhir/Patient", params=search, headers=lakeside.headers(),
                        timeout=10).json()["total"] == 1  # fmt: skip


def test_consent_writes_need_the_scope_and_a_valid_resource(member):
    reader = member("Reader", scopes=["system/Consent.read", "system/Patient.read"])
    refused = requests.post(f"{reader.base}/fhir/Consent", json=opt_out("urn:x", "1"), headers=reader.headers(),
                            timeout=10)  # fmt: skip
    assert refused.status_code == 403
    writer = member("Writer")
    unknown = requests.post(f"{writer.base}/fhir/Consent", json=opt_out(writer.system, "NOBODY"),
                            headers=writer.headers(), timeout=10)  # fmt: skip
    assert unknown.status_code == 404
    no_scope = {**opt_out(writer.system, "X"), "scope": {"coding": [{"code": "research"}]}}
    bad = requests.post(f"{writer.base}/fhir/Consent", json=no_scope, headers=writer.headers(), timeout=10)
    assert bad.status_code == 422
    assert bad.json()["resourceType"] == "OperationOutcome"


def test_consents_are_found_by_date_recorded_and_by_period(member):
    riverside = member("Riverside")
    client = riverside.fhir()
    client.resources("Patient").search(identifier=f"{riverside.system}|R1").update(
        client.resource("Patient", **patient(riverside.system, "R1"))
    )
    seasonal = {**opt_out(riverside.system, "R1"),
                "provision": {"type": "deny", "period": {"start": "2026-12-01T00:00:00+00:00",
                                                         "end": "2027-02-28T23:59:59+00:00"}}}  # fmt: skip
    for resource in (opt_out(riverside.system, "R1"), seasonal):
        assert requests.post(f"{riverside.base}/fhir/Consent", json=resource, headers=riverside.headers(),
                             timeout=10).status_code == 201  # fmt: skip

    def total(**params) -> int:
        params["patient.identifier"] = f"{riverside.system}|R1"
        answer = requests.get(f"{riverside.base}/fhir/Consent", params=params, headers=riverside.headers(), timeout=10)
        assert answer.status_code == 200, answer.text
        return Bundle.model_validate_json(answer.content).total

    assert total(date="2026-11") == 2
    assert total(date="lt2026-11-20") == 0
    # FHIR date search on a period: eq means the period lies within the searched range.
    assert total(period="2026-12") == 0
    assert total(period="le2026-12-31") == 2  # both start by then (an open start reaches back forever)
    assert total(period="lt2026-12-01") == 1  # the seasonal one starts in December
    assert total(period="gt2027-03-01") == 1  # only the open-ended one reaches past February
    bad = requests.get(f"{riverside.base}/fhir/Consent", headers=riverside.headers(), timeout=10,
                       params={"patient.identifier": f"{riverside.system}|R1", "actor": "Organization/x"})  # fmt: skip
    assert bad.status_code == 200
    assert Bundle.model_validate_json(bad.content).total == 0
