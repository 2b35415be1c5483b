"""The OpenAPI description of the non-FHIR endpoints is public and covers them all."""

from django.urls import reverse


def test_schema_lists_the_operations_and_oauth_endpoints(client):
    response = client.get(reverse("openapi-schema"), {"format": "json"}, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert set(schema["paths"]) == {"/healthz", "/readyz", "/oauth/token", "/oauth/revoke_token"}
    assert set(schema["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    token = schema["paths"]["/oauth/token"]["post"]
    grant = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]["grant_type"]
    assert grant["enum"] == ["client_credentials"]
