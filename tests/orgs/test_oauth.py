"""OAuth2 client credentials: issuance, expiry, scopes and revocation, through the real endpoints."""

import hashlib
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from fhir.resources.R4B.operationoutcome import OperationOutcome
from oauth2_provider.models import AccessToken

from hie.orgs.models import ApiClient
from hie.orgs.services import revoke_client
from tests.conftest import basic_auth


def bearer(token: dict) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token['access_token']}"}


def assert_outcome(response, status: int, code: str) -> OperationOutcome:
    assert response.status_code == status
    assert response["Content-Type"] == "application/fhir+json"
    outcome = OperationOutcome.model_validate_json(response.content)
    assert outcome.issue[0].code == code
    return outcome


def test_client_credentials_give_a_bearer_token_limited_to_five_minutes(make_member, get_token, client):
    member = make_member()
    token = get_token(member)
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 300
    assert set(token["scope"].split()) == set(member.client.scope_list)
    assert client.get("/fhir/Organization", **bearer(token)).status_code == 200


def test_expired_token_is_refused_with_401(make_member, get_token, client):
    token = get_token(make_member())
    stored = AccessToken.objects.filter(token_checksum=hashlib.sha256(token["access_token"].encode()).hexdigest())
    assert stored.get().token == "", "access tokens are not kept in plain text"
    stored.update(expires=timezone.now() - timedelta(seconds=1))
    response = client.get("/fhir/Organization", **bearer(token))
    assert_outcome(response, 401, "login")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_secret_gets_no_token(make_member, client):
    member = make_member()
    response = client.post(
        "/oauth/token",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=basic_auth(member.client.client_id, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_cannot_ask_for_a_scope_it_was_not_granted(make_member, client):
    member = make_member(scopes=["system/Patient.read"])
    response = client.post(
        "/oauth/token",
        {"grant_type": "client_credentials", "scope": "system/Patient.write"},
        HTTP_AUTHORIZATION=basic_auth(member.client.client_id, member.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_client_without_the_scope_gets_403_operation_outcome(make_member, get_token, client):
    token = get_token(make_member(scopes=["system/Patient.read"]))
    response = client.get("/fhir/Organization", **bearer(token))
    outcome = assert_outcome(response, 403, "forbidden")
    assert "system/Organization.read" in outcome.issue[0].diagnostics


def test_request_without_token_gets_401(client, db):
    assert_outcome(client.get("/fhir/Organization"), 401, "login")


def test_revoked_client_is_refused_at_once(make_member, get_token, client):
    member = make_member()
    token = get_token(member)
    revoke_client(member.client)
    assert_outcome(client.get("/fhir/Organization", **bearer(token)), 401, "login")
    response = client.post(
        "/oauth/token",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=basic_auth(member.client.client_id, member.client_secret),
    )
    assert response.status_code == 401


def test_token_of_a_client_whose_organization_was_deactivated_is_refused(make_member, get_token, client):
    member = make_member()
    token = get_token(member)
    member.client.organization.active = False
    member.client.organization.save()
    assert_outcome(client.get("/fhir/Organization", **bearer(token)), 401, "login")


@pytest.mark.django_db
def test_create_member_prints_credentials_that_work_once(capsys, client):
    call_command(
        "create_member",
        "Northside Clinic",
        "--identifier-system",
        "urn:oid:1.2.840.99.1",
        "--facility",
        "NORTHSIDE",
        "--endpoint",
        "https://northside.example/fhir",
        "--scopes",
        "system/Patient.read",
        "system/Organization.read",
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["identifier_systems"] == ["urn:oid:1.2.840.99.1"]
    stored = ApiClient.objects.get(client_id=printed["client_id"])
    assert stored.client_secret != printed["client_secret"], "the secret is stored hashed"
    response = client.post(
        "/oauth/token",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=basic_auth(printed["client_id"], printed["client_secret"]),
    )
    assert response.status_code == 200
    assert response.json()["scope"].split() == ["system/Organization.read", "system/Patient.read"]


def test_an_identifier_system_belongs_to_one_member_only(make_member):
    make_member(system="urn:oid:1.2.3.4.5")
    with pytest.raises(CommandError, match="already belongs"):
        call_command("create_member", "Copycat Clinic", "--identifier-system", "urn:oid:1.2.3.4.5")


def test_unknown_scope_is_refused_by_create_member(db):
    with pytest.raises(CommandError, match="unknown scopes"):
        call_command("create_member", "Odd Clinic", "--identifier-system", "urn:x:1", "--scopes", "user/*.*")
