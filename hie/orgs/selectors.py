"""Reading the member directory."""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from hie.orgs.models import ApiClient, IdentifierSystem, Organization

AccessToken = get_access_token_model()


def active_organizations() -> list[Organization]:
    return list(Organization.objects.filter(active=True).prefetch_related("identifier_systems"))


def organization_by_id(organization_id: int) -> Organization | None:
    return Organization.objects.filter(pk=organization_id, active=True).prefetch_related("identifier_systems").first()


def member_overview() -> list[Organization]:
    """Organizations with their identifier systems and a count of usable API clients."""
    return list(
        Organization.objects.annotate(
            usable_clients=Count("api_clients", filter=Q(api_clients__revoked_at__isnull=True))
        ).prefetch_related("identifier_systems")
    )


def known_identifier_systems(uris: list[str]) -> set[str]:
    """Which of these identifier systems some member assigns identifiers under."""
    return set(IdentifierSystem.objects.filter(uri__in=uris).values_list("uri", flat=True))


@dataclass(frozen=True)
class BearerGrant:
    """What a stored access token grants: to which client, which scopes, until when."""

    client: ApiClient
    scopes: frozenset[str]
    unexpired: bool
    usable: bool  # the client is neither revoked nor of an inactive organization
    resource_bound: bool  # RFC 8707 audience restriction (checked the slower way)
    purposes: frozenset[str]  # the purposes of use granted to the client (the token may carry fewer)


# What a request uses of the client's organization (text and a flag: no conversions needed).
_ORGANIZATION_COLUMNS = ["id", "name", "hl7_facility", "fhir_endpoint", "default_purpose_of_use", "active"]
_BEARER_GRANT = f"""
    SELECT t.expires > %s, t.scope, t.resource, a.id, a.client_id, a.revoked_at, a.purposes_of_use,
           {", ".join(f"o.{column}" for column in _ORGANIZATION_COLUMNS)}
    FROM {AccessToken._meta.db_table} t
    JOIN {ApiClient._meta.db_table} a ON a.id = t.application_id
    JOIN {Organization._meta.db_table} o ON o.id = a.organization_id
    WHERE t.token_checksum = %s
"""  # noqa: S608 - table names only


def bearer_grant(token_checksum: str) -> BearerGrant | None:
    """The grant of the access token with this checksum, in one query (every API request asks)."""
    with connection.cursor() as cursor:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(_BEARER_GRANT, [now, token_checksum])
        row = cursor.fetchone()
    if row is None:
        return None
    unexpired, scope, resource, client_id, client_key, revoked_at, purposes, *organization_row = row
    organization_row[-1] = bool(organization_row[-1])  # SQLite answers 0 or 1
    # The client's organization comes with it (its other fields load if asked for): every
    # request's consent decision and audit event need it.
    organization = Organization.from_db(connection.alias, _ORGANIZATION_COLUMNS, organization_row)
    client = ApiClient.from_db(
        connection.alias, ["id", "client_id", "organization_id", "revoked_at"],
        [client_id, client_key, organization.pk, revoked_at],
    )  # fmt: skip
    client.organization = organization
    return BearerGrant(
        client=client,
        scopes=frozenset((scope or "").split()),
        unexpired=bool(unexpired),
        usable=ApiClient.usable(revoked_at, organization.active),
        resource_bound=resource not in (None, "", "[]", []),
        purposes=frozenset((purposes or "").split()),
    )
