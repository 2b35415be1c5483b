"""Reading gather jobs and dead letters."""

from django.db.models import QuerySet

from hie.exchange.models import DeadLetter, EndpointState, GatherJob
from hie.orgs.models import Organization


def gather_job_of(job_id: str, requester: Organization) -> GatherJob | None:
    """The job, if `requester` asked for it (other members are told it does not exist)."""
    if not job_id.isdecimal():
        return None
    return GatherJob.objects.select_related("person").filter(pk=int(job_id), requester=requester).first()


def recent_gather_jobs(limit: int = 50) -> QuerySet[GatherJob]:
    return (
        GatherJob.objects.select_related("requester", "person")
        .prefetch_related("calls__custodian")
        .order_by("-pk")[:limit]
    )


def open_dead_letters() -> QuerySet[DeadLetter]:
    return (
        DeadLetter.objects.filter(resolved=False)
        .select_related("call__custodian", "call__job", "delivery__subscription__organization", "delivery__event")
        .order_by("-pk")
    )


def endpoint_states() -> list[tuple[Organization, EndpointState | None]]:
    states = {s.organization_id: s for s in EndpointState.objects.all()}
    return [(o, states.get(o.pk)) for o in Organization.objects.exclude(fhir_endpoint="").order_by("name")]
