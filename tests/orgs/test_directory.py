"""The member directory as FHIR Organization resources."""

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.organization import Organization

from hie.audit.models import AuditEvent


def test_members_see_the_directory_with_identifier_systems(make_member, get_token, client):
    riverside = make_member("Riverside", system="urn:oid:2.1.1", facility="RIV")
    make_member("Lakeside", system="urn:oid:2.1.2")
    token = get_token(riverside)
    response = client.get("/fhir/Organization", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")
    assert response.status_code == 200
    bundle = Bundle.model_validate_json(response.content)
    assert bundle.type == "searchset"
    assert bundle.total == 2
    by_name = {entry.resource.name: entry.resource for entry in bundle.entry}
    assert [ext.valueUri for ext in by_name["Riverside"].extension] == ["urn:oid:2.1.1"]
    assert by_name["Riverside"].identifier[0].value == "RIV"
    assert AuditEvent.objects.filter(event_type="organization-search", api_client=riverside.client).count() == 1


def test_read_one_organization_and_unknown_id_is_404(make_member, get_token, client):
    member = make_member("Riverside")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {get_token(member)['access_token']}"}
    response = client.get(f"/fhir/Organization/{member.client.organization_id}", **auth)
    assert Organization.model_validate_json(response.content).name == "Riverside"
    missing = client.get("/fhir/Organization/999999", **auth)
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
