"""Changes to the member directory: organizations, their API clients and HL7 v2 sender credentials."""

import hashlib
import ipaddress
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AccessToken

from hie.exceptions import ValidationFailed
from hie.orgs.keys import check_jwks, check_jwks_uri
from hie.orgs.models import ApiClient, HL7Certificate, HL7SourceNetwork, IdentifierSystem, Organization
from hie.orgs.scopes import is_valid_scope


@dataclass(frozen=True)
class IssuedClient:
    """A client and its secret in plain text, which exists only here and is shown once."""

    client: ApiClient
    client_secret: str


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(s for s in set(scopes) if not is_valid_scope(s))
    if unknown:
        raise ValidationFailed(f"unknown scopes: {', '.join(unknown)}")
    if not scopes:
        raise ValidationFailed("a client needs at least one scope")
    return sorted(set(scopes))


def check_purposes(purposes: list[str]) -> list[str]:
    unknown = sorted(set(purposes) - set(settings.FHIR_PURPOSES_OF_USE))
    if unknown:
        raise ValidationFailed(f"unknown purposes of use: {', '.join(unknown)}")
    return sorted(set(purposes))


def _default_purpose(code: str | None) -> str:
    code = settings.FHIR_DEFAULT_PURPOSE_OF_USE if code is None else code
    if code and code not in settings.FHIR_PURPOSES_OF_USE:
        raise ValidationFailed(f"unknown purpose of use: {code}")
    return code


@transaction.atomic
def create_organization(
    *,
    name: str,
    identifier_systems: list[str],
    hl7_facility: str = "",
    fhir_endpoint: str = "",
    default_purpose: str | None = None,
) -> Organization:
    """A new member. `default_purpose` is the purpose of use of its reads that name none
    (None: FHIR_DEFAULT_PURPOSE_OF_USE; "": none, every read must name one)."""
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
        name=name,
        hl7_facility=hl7_facility or None,
        fhir_endpoint=fhir_endpoint,
        default_purpose_of_use=_default_purpose(default_purpose),
    )
    IdentifierSystem.objects.bulk_create(
        IdentifierSystem(organization=organization, uri=uri) for uri in dict.fromkeys(identifier_systems)
    )
    return organization


def create_api_client(
    *,
    organization: Organization,
    scopes: list[str],
    label: str = "",
    purposes: list[str] | None = None,
    jwks: dict | None = None,
    jwks_uri: str = "",
) -> IssuedClient:
    """A client of the organization, granted `scopes` and `purposes` of use (None: every
    purpose the node knows). With a JWK Set or its URL it may also authenticate with signed
    client assertions (SMART Backend Services); the shared secret works either way."""
    secret = generate_client_secret()
    client = ApiClient(
        organization=organization,
        name=label or f"{organization.name} client",
        client_type=ApiClient.CLIENT_CONFIDENTIAL,
        authorization_grant_type=ApiClient.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,  # hashed on save; the plain text is returned once
        allowed_scopes=" ".join(check_scopes(scopes)),
        purposes_of_use=" ".join(
            check_purposes(sorted(settings.FHIR_PURPOSES_OF_USE) if purposes is None else purposes)
        ),
    )
    _set_keys(client, jwks=jwks, jwks_uri=jwks_uri)
    client.save()
    return IssuedClient(client=client, client_secret=secret)


@transaction.atomic
def create_member(
    *,
    name: str,
    identifier_systems: list[str],
    scopes: list[str],
    hl7_facility: str = "",
    fhir_endpoint: str = "",
    hl7_certificates: Sequence[str] = (),
    hl7_source_networks: Sequence[str] = (),
    default_purpose: str | None = None,
    purposes: list[str] | None = None,
    jwks: dict | None = None,
    jwks_uri: str = "",
) -> IssuedClient:
    """A member with its API client and, for its HL7 v2 feed, the certificates (PEM text or
    fingerprints) and source networks that prove its interface engine."""
    organization = create_organization(
        name=name, identifier_systems=identifier_systems, hl7_facility=hl7_facility, fhir_endpoint=fhir_endpoint,
        default_purpose=default_purpose,
    )  # fmt: skip
    for certificate in hl7_certificates:
        add_hl7_certificate(organization=organization, certificate=certificate)
    for network in hl7_source_networks:
        allow_hl7_source(organization=organization, network=network)
    return create_api_client(organization=organization, scopes=scopes, purposes=purposes, jwks=jwks, jwks_uri=jwks_uri)


def _set_keys(client: ApiClient, *, jwks: dict | None, jwks_uri: str) -> None:
    if jwks is not None and jwks_uri:
        raise ValidationFailed("register a JWK Set or its URL, not both")
    client.jwks = check_jwks(jwks) if jwks is not None else None
    client.jwks_uri = check_jwks_uri(jwks_uri) if jwks_uri else ""


def register_client_keys(*, client: ApiClient, jwks: dict | None = None, jwks_uri: str = "") -> ApiClient:
    """Replace the public keys the client signs its assertions with (nothing: assertions are
    refused from now on; the shared secret still works)."""
    _set_keys(client, jwks=jwks, jwks_uri=jwks_uri)
    client.save(update_fields=["jwks", "jwks_uri"])
    return client


def set_default_purpose(*, organization: Organization, purpose: str) -> Organization:
    """The purpose of use of the member's reads that name none ("" : every read must name one)."""
    organization.default_purpose_of_use = _default_purpose(purpose)
    organization.save(update_fields=["default_purpose_of_use"])
    return organization


def certificate_fingerprint(certificate: str) -> str:
    """The SHA-256 fingerprint (lowercase hex) of a PEM certificate, or of a fingerprint as
    `openssl x509 -fingerprint -sha256` prints it (colons and case do not matter)."""
    if "-----BEGIN CERTIFICATE-----" in certificate:
        try:
            return hashlib.sha256(ssl.PEM_cert_to_DER_cert(certificate.strip())).hexdigest()
        except ValueError as exc:
            raise ValidationFailed("the certificate is not readable PEM") from exc
    digest = re.sub(r"^(sha256 fingerprint=)", "", certificate.strip(), flags=re.IGNORECASE).replace(":", "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValidationFailed("give a PEM certificate or its SHA-256 fingerprint (64 hex digits)")
    return digest


@transaction.atomic
def add_hl7_certificate(*, organization: Organization, certificate: str) -> HL7Certificate:
    """Let the interface engine presenting this TLS client certificate send HL7 v2 as the member."""
    sha256 = certificate_fingerprint(certificate)
    owner = HL7Certificate.objects.filter(sha256=sha256).select_related("organization").first()
    if owner is not None and owner.organization_id != organization.pk:
        raise ValidationFailed("this certificate already speaks for another member")
    return owner or HL7Certificate.objects.create(organization=organization, sha256=sha256)


def remove_hl7_certificate(*, organization: Organization, certificate: str) -> int:
    """Stop accepting the certificate (within HL7_MEMBER_CACHE_SECONDS); how many were removed."""
    sha256 = certificate_fingerprint(certificate)
    return organization.hl7_certificates.filter(sha256=sha256).delete()[0]


def _network(network: str) -> str:
    try:
        return str(ipaddress.ip_network(network.strip(), strict=True))
    except ValueError as exc:
        raise ValidationFailed(f"not an address or network: {network!r} (e.g. 10.20.0.5 or 10.20.0.0/24)") from exc


def allow_hl7_source(*, organization: Organization, network: str) -> HL7SourceNetwork:
    """Let plain MLLP connections from this address or network send HL7 v2 as the member."""
    return HL7SourceNetwork.objects.get_or_create(organization=organization, network=_network(network))[0]


def disallow_hl7_source(*, organization: Organization, network: str) -> int:
    return organization.hl7_source_networks.filter(network=_network(network)).delete()[0]


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
