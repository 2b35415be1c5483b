"""API-wide conventions: the CapabilityStatement, purpose of use, rate limiting."""

import requests
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from hie.fhir.patient_search import SEARCH_PARAMETERS


def test_metadata_describes_what_is_supported(node):
    response = requests.get(f"{node}/fhir/metadata", timeout=10)
    assert response.status_code == 200
    statement = CapabilityStatement.model_validate_json(response.content)
    assert statement.fhirVersion == "4.0.1"
    assert statement.kind == "instance"
    patient = next(r for r in statement.rest[0].resource if r.type == "Patient")
    assert {p.name for p in patient.searchParam} == set(SEARCH_PARAMETERS)
    assert {o.name for o in patient.operation} == {"ihe-pix", "match", "break-glass", "gather-documents"}
    resources = {r.type for r in statement.rest[0].resource}
    assert resources >= {"DocumentReference", "Binary", "Task", "Subscription", "Consent", "Organization"}
    assert [i.code for i in statement.rest[0].interaction] == ["transaction"]  # MHD ITI-65
    assert patient.conditionalUpdate is True
    assert patient.versioning == "versioned-update"
    assert statement.rest[0].security.service[0].coding[0].code == "SMART-on-FHIR"


def test_rate_limit_answers_429_with_retry_after(member, settings):
    settings.FHIR_RATE_LIMIT = 3
    riverside = member("Riverside")
    url = f"{riverside.base}/fhir/Patient"
    statuses = [requests.get(url, params={"family": "x"}, headers=riverside.headers(), timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    refused = statuses[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= settings.FHIR_RATE_WINDOW + 1
    assert refused.json()["issue"][0]["code"] == "throttled"
    # Another member has an allowance of its own.
    lakeside = member("Lakeside")
    assert requests.get(url, params={"family": "x"}, headers=lakeside.headers(), timeout=10).status_code == 200


def test_writes_need_the_write_scope(member):
    reader = member("Reader", scopes=["system/Patient.read"])
    response = requests.post(f"{reader.base}/fhir/Patient", json={"resourceType": "Patient"},
                             headers=reader.headers(), timeout=10)  # fmt: skip
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
