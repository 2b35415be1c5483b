"""Bodies too large or nested too deep are refused with an OperationOutcome, never a 500, and a
realistic document by value (an 8 MB PDF) goes through."""

import base64
import hashlib
import json
import os

import pytest
import requests

from hie.audit.models import AuditEvent
from hie.locator.models import DocumentEntry
from tests.fhir.conftest import patient
from tests.fhir.test_documents import document, register_patient, submit

FHIR = "application/fhir+json"
DEEP = "[" * 5000 + "]" * 5000
BODY_ENDPOINTS = ["/fhir/Patient", "/fhir/Patient/$match", "/fhir", "/fhir/Consent", "/fhir/Subscription",
                  "/fhir/Patient/$gather-documents"]  # fmt: skip


def outcome_of(response) -> dict:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("path", BODY_ENDPOINTS)
def test_json_nested_5000_deep_is_a_400(client, member_headers, path):
    _, headers = member_headers()
    response = client.post(path, DEEP, content_type=FHIR, **headers)
    assert response.status_code == 400, response.content
    assert "nested more than 100 levels" in outcome_of(response)["diagnostics"]

    wrapped = json.dumps({"resourceType": "Patient", "extension": [json.loads("[" * 150 + "]" * 150)]})
    assert client.post(path, wrapped, content_type=FHIR, **headers).status_code == 400


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_naming_the_limit(client, member_headers, settings):
    settings.FHIR_MAX_BODY_BYTES = 4096
    system, headers = member_headers()
    large = json.dumps(patient(system, "BIG-1", text={"status": "generated", "div": "x" * 5000}))
    response = client.post("/fhir/Patient", large, content_type=FHIR, **headers)
    assert response.status_code == 413
    issue = outcome_of(response)
    assert issue["code"] == "too-long"
    assert "4096 bytes" in issue["diagnostics"]
    assert "by reference" in issue["diagnostics"]
    refusal = AuditEvent.objects.filter(event_type="patient-type").order_by("-sequence").first()
    assert refusal.detail == {"status": 413, "code": "too-long"}

    small = json.dumps(patient(system, "SMALL-1"))
    assert client.post("/fhir/Patient", small, content_type=FHIR, **headers).status_code == 201


@pytest.mark.django_db
def test_an_understated_content_length_never_reads_past_the_limit(client, member_headers, settings):
    settings.FHIR_MAX_BODY_BYTES = 4096
    _, headers = member_headers()
    body = b'{"resourceType": "Patient", "x": "' + b"y" * 6000 + b'"}'
    understated = client.post("/fhir/Patient", body, content_type=FHIR, CONTENT_LENGTH="100", **headers)
    assert understated.status_code == 400  # the stream ends at the declared length: not JSON
    assert "not JSON" in outcome_of(understated)["diagnostics"]


@pytest.mark.django_db
def test_a_10_mb_json_body_is_under_the_limit(client, member_headers):
    system, headers = member_headers()
    ten_mb = json.dumps(patient(system, "TEN-1", text={"status": "generated", "div": "x" * 10_000_000}))
    response = client.post("/fhir/Patient", ten_mb, content_type=FHIR, **headers)
    assert response.status_code == 201, response.content[:300]  # under the limit: a Patient like any other


@pytest.mark.django_db
def test_without_a_token_a_large_body_is_not_read(client):
    response = client.post("/fhir/Patient", b"x" * (3 * 1024 * 1024), content_type=FHIR)
    assert response.status_code == 401


@pytest.mark.django_db
def test_the_token_endpoint_keeps_djangos_limit(client):
    response = client.post("/oauth/token", "grant_type=client_credentials&pad=" + "x" * (3 * 1024 * 1024),
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert response.status_code == 400


def test_an_8_mb_pdf_by_value_is_registered_and_retrieved_over_http(member):
    clinic = member("Clinic")
    register_patient(clinic, "C-8")
    pdf = b"%PDF-1.7\n" + os.urandom(8 * 1024 * 1024)
    response = submit(clinic, document(clinic, "C-8", "urn:uuid:eight-mb", data=pdf))
    assert response.status_code == 200, response.text[:500]
    entry = DocumentEntry.objects.get()
    assert (entry.size, entry.sha1) == (len(pdf), hashlib.sha1(pdf, usedforsecurity=False).hexdigest())
    fetched = requests.get(f"{clinic.base}/fhir/Binary/{entry.pk}", headers=clinic.headers(), timeout=30)
    assert fetched.status_code == 200
    assert fetched.content == pdf


def test_a_document_over_the_limit_is_refused_over_http_pointing_to_by_reference(member, settings):
    settings.FHIR_MAX_BODY_BYTES = 1024 * 1024
    clinic = member("Clinic")
    register_patient(clinic, "C-9")
    pdf = base64.b64decode(base64.b64encode(os.urandom(2 * 1024 * 1024)))
    response = submit(clinic, document(clinic, "C-9", "urn:uuid:two-mb", data=pdf))
    assert response.status_code == 413
    assert "by reference" in outcome_of(response)["diagnostics"]
    assert not DocumentEntry.objects.exists()
