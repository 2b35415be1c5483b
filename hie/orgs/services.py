"""Changes to the member directory: organizations and their API clients."""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AccessToken

from hie.exceptions import ValidationFailed
from hie.orgs.models import ApiClient, IdentifierSystem, Organization, valid_scopes


@dataclass(frozen=True)
class IssuedClient:
    """A client and its secret in plain text, which exists only here and is shown once."""

    client: ApiClient
    client_secret: str


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - valid_scopes())
    if unknown:
        raise ValidationFailed(f"unknown scopes: {', '.join(unknown)}")
    if not scopes:
        raise ValidationFailed("a client needs at least one scope")
    return sorted(set(scopes))


@transaction.atomic
def create_organization(
    *, name: str, identifier_systems: list[str], hl7_facility: str = "", fhir_endpoint: str = ""
) -> Organization:
    if not identifier_systems:
        raise ValidationFailed("an organization assigns identifiers under at least one identifier system")
    if Organization.objects.filter(name=name).exists():
        raise ValidationFailed(f"an organization named {name!r} exists already")
    taken = IdentifierSystem.objects.filter(uri__in=identifier_systems).values_list("uri", flat=True)
    if taken:
        raise ValidationFailed(f"identifier system already belongs to another member: {', '.join(taken)}")
    if hl7_facility and Organization.objects.filter(hl7_facility=hl7_facility).exists():
        raise ValidationFailed(f"HL7 facility {hl7_facility!r} already belongs to another member")
    organization = Organization.objects.create(
        name=name, hl7_facility=hl7_facility or None, fhir_endpoint=fhir_endpoint
    )
    IdentifierSystem.objects.bulk_create(
        IdentifierSystem(organization=organization, uri=uri) for uri in dict.fromkeys(identifier_systems)
    )
    return organization


def create_api_client(*, organization: Organization, scopes: list[str], label: str = "") -> IssuedClient:
    secret = generate_client_secret()
    client = ApiClient.objects.create(
        organization=organization,
        name=label or f"{organization.name} client",
        client_type=ApiClient.CLIENT_CONFIDENTIAL,
        authorization_grant_type=ApiClient.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,  # hashed on save; the plain text is returned once
        allowed_scopes=" ".join(check_scopes(scopes)),
    )
    return IssuedClient(client=client, client_secret=secret)


@transaction.atomic
def create_member(
    *, name: str, identifier_systems: list[str], scopes: list[str], hl7_facility: str = "", fhir_endpoint: str = ""
) -> IssuedClient:
    organization = create_organization(
        name=name, identifier_systems=identifier_systems, hl7_facility=hl7_facility, fhir_endpoint=fhir_endpoint
    )
    return create_api_client(organization=organization, scopes=scopes)


@transaction.atomic
def revoke_client(client: ApiClient) -> None:
    """Refuse the client from now on, including tokens it already holds."""
    client.revoked_at = timezone.now()
    client.save(update_fields=["revoked_at"])
    AccessToken.objects.filter(application=client).delete()


@transaction.atomic
def rotate_client_secret(client: ApiClient) -> str:
    secret = generate_client_secret()
    client.client_secret = secret
    client.save()
    AccessToken.objects.filter(application=client).delete()
    return secret


def set_fhir_endpoint(*, organization: Organization, fhir_endpoint: str) -> Organization:
    """Where the node calls the member for documents it holds; by-reference documents must live under it."""
    if fhir_endpoint and not fhir_endpoint.startswith(("https://", "http://")):
        raise ValidationFailed("the FHIR endpoint must be an http(s) URL")
    organization.fhir_endpoint = fhir_endpoint.rstrip("/")
    organization.save(update_fields=["fhir_endpoint"])
    return organization
