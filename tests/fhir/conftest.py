"""A live node over real HTTP, and members that talk to it with fhirpy."""

from dataclasses import dataclass

import pytest
import requests
from fhirpy import SyncFHIRClient

from hie.orgs.models import Organization
from tests.conftest import basic_auth


@pytest.fixture
def node(live_server, audit_rows_flushable):
    """The base URL of a node serving over real HTTP, on the test database."""
    return live_server.url


@dataclass
class Member:
    organization: Organization
    system: str
    token: str
    base: str

    def fhir(self, purpose: str | None = "TREAT") -> SyncFHIRClient:
        headers = {"X-Purpose-Of-Use": purpose} if purpose else {}
        return SyncFHIRClient(f"{self.base}/fhir", authorization=f"Bearer {self.token}", extra_headers=headers)

    def headers(self, purpose: str | None = "TREAT", **extra: str) -> dict:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json", **extra}
        if purpose:
            headers["X-Purpose-Of-Use"] = purpose
        return headers


@pytest.fixture
def member(node, make_member):
    """A member organization with an access token from the node's real token endpoint."""

    def make(name: str | None = None, scopes: list[str] | None = None) -> Member:
        issued = make_member(name, scopes=scopes)
        response = requests.post(
            f"{node}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic_auth(issued.client.client_id, issued.client_secret)},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        organization = issued.client.organization
        return Member(organization, organization.identifier_system_uris[0], response.json()["access_token"], node)

    return make


def patient(system: str, value: str, **overrides) -> dict:
    """A synthetic Patient resource as a member would send it."""
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": value}],
        "name": [{"use": "official", "family": "Quintanilla", "given": ["Marisol", "Ines"]}],
        "gender": "female",
        "birthDate": "1984-07-19",
        "telecom": [{"system": "phone", "value": "(503) 555-0142"}, {"system": "email", "value": "mq@example.org"}],
        "address": [
            {"use": "home", "line": ["418 Alder Creek Rd"], "city": "Fairview", "state": "OR", "postalCode": "97024"}
        ],
    }
    resource.update(overrides)
    return resource


@pytest.fixture
def member_headers(make_member, get_token):
    """A member talking to the node in process (Django's test client): its identifier system and
    the headers of its requests, with a token from the real token endpoint."""

    def make(name: str | None = None) -> tuple[str, dict]:
        issued = make_member(name)
        token = get_token(issued)["access_token"]
        system = issued.client.organization.identifier_system_uris[0]
        return system, {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_X_PURPOSE_OF_USE": "TREAT"}

    return make
