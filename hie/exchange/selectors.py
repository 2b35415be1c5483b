"""Reading gather jobs and dead letters."""

from django.db.models import QuerySet

from consent.decide import decide
from hie.exchange.models import DeadLetter, EndpointState, GatherJob
from hie.orgs.models import Organization


def gather_job_of(job_id: str, requester: Organization) -> GatherJob | None:
    """The job, if `requester` asked for it and may still see its person (other members, and a
    requester the person's consent now hides from, are told it does not exist)."""
    if not job_id.isdecimal() or len(job_id) > 18:
        return None
    job = GatherJob.objects.select_related("person").filter(pk=int(job_id), requester=requester).first()
    if job is None or not decide(job.person, requester, job.purpose).permitted:
        return None
    return job


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
