"""ITI-65 by reference: the node fetches only under the member's registered endpoint, whatever
spelling of an address outside it a submission tries."""

import base64
import hashlib
import json

import pytest

from hie.locator.models import DocumentEntry
from hie.orgs.models import Organization
from tests.fhir.conftest import patient

pytestmark = pytest.mark.django_db
ENDPOINT = "https://fhir.riverside.example/r4"


def submission(system: str, url: str) -> str:
    attachment = {"contentType": "application/pdf", "url": url, "size": 12,
                  "hash": base64.b64encode(hashlib.sha1(b"x", usedforsecurity=False).digest()).decode()}  # fmt: skip
    resource = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:7d1c"},
        "status": "current",
        "subject": {"identifier": {"system": system, "value": "RIV-1"}},
        "content": [{"attachment": attachment}],
    }
    entry = {"fullUrl": "urn:uuid:1", "resource": resource, "request": {"method": "POST", "url": "DocumentReference"}}
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


@pytest.fixture
def riverside(client, member_headers):
    system, headers = member_headers("Riverside")
    Organization.objects.filter(identifier_systems__uri=system).update(fhir_endpoint=ENDPOINT)
    body = json.dumps(patient(system, "RIV-1"))
    assert client.post("/fhir/Patient", body, content_type="application/fhir+json", **headers).status_code == 201

    def submit(url: str):
        return client.post("/fhir", submission(system, url), content_type="application/fhir+json", **headers)

    return submit


@pytest.mark.parametrize(
    "url",
    [
        f"{ENDPOINT}/../../../etc/passwd",
        f"{ENDPOINT}/Binary/../../../etc/passwd",
        f"{ENDPOINT}/%2e%2e/%2E%2E/admin/",
        f"{ENDPOINT}/.%2e/secrets",
        f"{ENDPOINT}/Binary/..%2f..%2f..%2fetc%2fpasswd",
        f"{ENDPOINT}/Binary\\..\\..\\etc",
        "https://fhir.riverside.example.evil.example/r4/Binary/1",
        "https://attacker@fhir.riverside.example/r4/Binary/1",
    ],
)
def test_an_address_outside_the_registered_endpoint_is_refused(riverside, url):
    response = riverside(url)
    assert response.status_code in (400, 422), response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert not DocumentEntry.objects.exists()


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        (f"{ENDPOINT}/Binary/lab-1", f"{ENDPOINT}/Binary/lab-1"),
        ("HTTPS://FHIR.Riverside.Example:443/r4/./Binary/%6Cab-1", f"{ENDPOINT}/Binary/lab-1"),
        (f"{ENDPOINT}/DocumentReference/../Binary/lab-1?_format=pdf", f"{ENDPOINT}/Binary/lab-1?_format=pdf"),
    ],
)
def test_an_address_under_the_endpoint_is_kept_in_normal_form(riverside, url, stored):
    response = riverside(url)
    assert response.status_code == 200, response.content
    assert DocumentEntry.objects.get().url == stored
