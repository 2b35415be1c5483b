"""Purpose of use as IHE IUA and SMART carry it: in the access token, else the member's default;
X-Purpose-Of-Use only narrows to a purpose the client was granted."""

from hie.audit.models import AuditEvent
from hie.orgs.scopes import purpose_scope
from hie.orgs.services import create_api_client, set_default_purpose
from tests.conftest import basic_auth

SEARCH = "/fhir/Patient?family=nobody"


def token_of(client, issued, scope: str | None = None) -> dict:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    response = client.post("/oauth/token", form,
                           HTTP_AUTHORIZATION=basic_auth(issued.client.client_id, issued.client_secret))  # fmt: skip
    return {"status": response.status_code, **response.json()}


def search(client, token: dict, purpose: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token['access_token']}"}
    if purpose:
        headers["HTTP_X_PURPOSE_OF_USE"] = purpose
    return client.get(SEARCH, **headers)


def audited_purpose(organization) -> str:
    return AuditEvent.objects.filter(event_type="patient-search", organization=organization).latest("id").purpose_of_use


def test_a_read_without_the_header_uses_the_members_default(make_member, client):
    issued = make_member()
    organization = issued.client.organization
    assert organization.default_purpose_of_use == "TREAT"
    token = token_of(client, issued)
    assert "purpose_of_use" not in token["scope"], "a token naming no purpose carries the client's grant"
    assert search(client, token).status_code == 200
    assert audited_purpose(organization) == "TREAT"
    set_default_purpose(organization=organization, purpose="HOPERAT")
    assert search(client, token).status_code == 200
    assert audited_purpose(organization) == "HOPERAT"


def test_the_token_carries_the_purpose_it_was_asked_for(make_member, client):
    issued = make_member()
    token = token_of(client, issued, f"system/Patient.rs {purpose_scope('PUBHLTH')}")
    assert token["status"] == 200
    assert purpose_scope("PUBHLTH") in token["scope"].split()
    assert search(client, token).status_code == 200
    assert audited_purpose(issued.client.organization) == "PUBHLTH"  # the token's, not the default TREAT
    refused = search(client, token, "TREAT")  # the header cannot widen what the token carries
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"


def test_the_header_narrows_only_to_a_purpose_granted_to_the_client(make_member, client):
    issued = make_member()
    granted = create_api_client(organization=issued.client.organization, scopes=["system/Patient.read"],
                                purposes=["TREAT", "ETREAT"])  # fmt: skip
    token = token_of(client, granted)
    assert search(client, token, "ETREAT").status_code == 200
    assert audited_purpose(issued.client.organization) == "ETREAT"
    assert search(client, token, "http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT").status_code == 200
    assert search(client, token, "HRESCH").status_code == 403
    assert search(client, token, "SNOOPING").status_code == 400
    assert token_of(client, granted, purpose_scope("HRESCH"))["error"] == "invalid_scope"


def test_without_a_default_the_purpose_must_be_named_unless_only_one_is_granted(make_member, client):
    issued = make_member()
    organization = issued.client.organization
    set_default_purpose(organization=organization, purpose="")
    missing = search(client, token_of(client, issued))
    assert missing.status_code == 400
    assert "X-Purpose-Of-Use" in missing.json()["issue"][0]["diagnostics"]
    single = create_api_client(organization=organization, scopes=["system/Patient.read"], purposes=["COC"])
    assert search(client, token_of(client, single)).status_code == 200
    assert audited_purpose(organization) == "COC"
    none = create_api_client(organization=organization, scopes=["system/Patient.read"], purposes=[])
    assert search(client, token_of(client, none)).status_code == 403
