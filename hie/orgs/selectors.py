"""Reading the member directory."""

from django.db.models import Count, Q

from hie.orgs.models import IdentifierSystem, Organization


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
