"""Gather jobs: ask every custodian of a person for its current documents and refresh the locator.

Each custodian is one CustodianCall, run by a Celery task: bounded attempts with exponential
backoff and jitter, a circuit breaker per endpoint (after EXCHANGE_BREAKER_FAILURES failures in
a row the endpoint is left alone for EXCHANGE_BREAKER_COOLDOWN_SECONDS), a switch that pauses an
endpoint, and a dead letter when the attempts run out. A job ends when every call has ended, or
at its deadline; its result names the custodians that did not answer.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent.decide import decide
from consent.selectors import consents_of_person, implicit_policies
from consent.services import audit_decision
from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.exceptions import CustodianFailed, CustodianTimeout, UnknownResource, ValidationFailed
from hie.exchange.models import CallStatus, CustodianCall, DeadLetter, EndpointState, GatherJob, JobStatus
from hie.exchange.notifications import replay_delivery
from hie.exchange.retries import backoff_seconds
from hie.fhir.document import document_from_custodian
from hie.locator.custodian import list_documents, prefetch_content
from hie.locator.models import DocumentEntry, DocumentStatus
from hie.locator.services import refresh_documents
from hie.orgs.models import Organization
from matching.models import Link, LinkState, PatientRecord, Person

logger = logging.getLogger(__name__)
PATIENT_NOT_KNOWN = "the patient is not known"  # also the answer for a patient consent hides
FINAL = {CallStatus.DONE, CallStatus.SKIPPED, CallStatus.FAILED, CallStatus.TIMED_OUT}


def _enqueue(call_ids: list[int], countdown: float = 0) -> None:
    from hie.exchange.tasks import call_custodian_task  # the tasks module imports this one

    for call_id in call_ids:
        transaction.on_commit(lambda c=call_id: call_custodian_task.apply_async((c,), countdown=countdown), robust=True)


def _records_at(person: Person) -> dict[int, list[PatientRecord]]:
    records: dict[int, list[PatientRecord]] = {}
    for link in Link.objects.filter(person=person, state=LinkState.MATCH, record__active=True).select_related("record"):
        records.setdefault(link.record.organization_id, []).append(link.record)
    return records


def start_gather(*, requester: Organization, person: Person, purpose: str, idempotency_key: str, prefetch: bool,
                 deadline_seconds: int, actor: Actor) -> tuple[GatherJob, bool]:  # fmt: skip
    """The job for this key (created, with one call per custodian to ask, when new); returns (job, created).

    A person the requester may not see (consent.decide(), as PIXm asks it) answers as an unknown one:
    the job's Task would name the person's EUID and the members holding their records.
    """
    if not 1 <= deadline_seconds <= 3600:
        raise ValidationFailed("the deadline is 1 to 3600 seconds")
    # Decided and audited before the job's transaction, so that the audit of a refusal is kept.
    decision = decide(person, requester, purpose)
    audit_decision(actor=actor, person=person, decision=decision, purpose=purpose)
    if not decision.permitted:
        raise UnknownResource(PATIENT_NOT_KNOWN)
    return _start_gather(requester=requester, person=person, purpose=purpose, idempotency_key=idempotency_key,
                         prefetch=prefetch, deadline_seconds=deadline_seconds, actor=actor)  # fmt: skip


@transaction.atomic
def _start_gather(*, requester: Organization, person: Person, purpose: str, idempotency_key: str, prefetch: bool,
                  deadline_seconds: int, actor: Actor) -> tuple[GatherJob, bool]:  # fmt: skip
    job, created = GatherJob.objects.get_or_create(
        requester=requester, idempotency_key=idempotency_key,
        defaults={"person": person, "purpose": purpose, "prefetch": prefetch,
                  "deadline": timezone.now() + timedelta(seconds=deadline_seconds)},
    )  # fmt: skip
    if not created:
        return job, False
    custodians = list(Organization.objects.filter(pk__in=_records_at(person), active=True).exclude(fhir_endpoint=""))
    at = timezone.now()
    consents = consents_of_person(person, at)  # read once for the decision about every custodian
    policies = implicit_policies({c.pk for c in custodians})
    calls = []
    for custodian in custodians:
        # Custodians whose documents would all be hidden from the requester are not asked.
        allowed = decide(person, requester, purpose, custodian=custodian, at=at, consents=consents,
                         custodian_policy=policies.get(custodian.pk)).permitted  # fmt: skip
        calls.append(CustodianCall(job=job, custodian=custodian,
                                   status=CallStatus.PENDING if allowed else CallStatus.SKIPPED))  # fmt: skip
    CustodianCall.objects.bulk_create(calls)
    pending = list(job.calls.filter(status=CallStatus.PENDING).values_list("pk", flat=True))
    record_event(actor=actor, action=Action.EXECUTE, event_type="gather-start", resource_type="Task",
                 resource_id=str(job.pk), person_euid=person.euid, purpose_of_use=purpose,
                 detail={"custodians": len(custodians), "asked": len(pending)})  # fmt: skip
    if pending:
        job.status = JobStatus.RUNNING
        job.save(update_fields=["status"])
        _enqueue(pending)
    else:
        _settle(job)
    return job, True


def _settle(job: GatherJob) -> None:
    """End the job once every call has ended.

    The job's row is locked first: two calls ending at once on two workers would otherwise each
    read the other as still running, and neither would end the job. The second to take the lock
    reads the first's outcome, committed.
    """
    with transaction.atomic():
        GatherJob.objects.select_for_update().filter(pk=job.pk).exists()
        statuses = set(CustodianCall.objects.filter(job_id=job.pk).values_list("status", flat=True))
        if statuses - FINAL:
            return
        job.status = JobStatus.DONE if statuses <= {CallStatus.DONE, CallStatus.SKIPPED} else JobStatus.PARTIAL
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at"])


@dataclass
class Attempt:
    call: CustodianCall
    replay: bool


def _begin(call_id: int, replay: bool) -> Attempt | None:
    """Claim the call for one attempt, or leave it (ended, paused, breaker open, past its deadline)."""
    with transaction.atomic():
        # Locking the call: a replay and a retry of the same call never run at once.
        call = (
            CustodianCall.objects.select_for_update(of=("self",))
            .select_related("job", "custodian")
            .filter(pk=call_id)
            .first()
        )
        if call is None or call.status != CallStatus.PENDING:
            return None
        now = timezone.now()
        if now >= call.job.deadline and not replay:
            call.status, call.finished_at, call.last_error = CallStatus.TIMED_OUT, now, "no answer before the deadline"
            call.save()
            _settle(call.job)
            return None
        state, _ = EndpointState.objects.get_or_create(organization=call.custodian)
        if state.paused:
            return None  # resumed when staff lift the pause
        if state.open_until and state.open_until > now:
            # Failing fast counts as an attempt: the call ends after its attempts even while the breaker stays open.
            call.attempts += 1
            _retry_or_give_up(call, "circuit breaker open", at=state.open_until, replay=replay)
            return None
        call.attempts += 1
        call.save(update_fields=["attempts"])
        return Attempt(call, replay)


def run_call(call_id: int, *, replay: bool = False) -> None:
    """One attempt at one custodian; the network call runs outside any transaction."""
    attempt = _begin(call_id, replay)
    if attempt is None:
        return
    call = attempt.call
    job = call.job
    try:
        listed = 0
        for record in _records_at(job.person).get(call.custodian_id, []):
            resources = list_documents(call.custodian, record.identifier_system, record.local_id)
            documents = []
            for i, resource in enumerate(resources):
                try:
                    documents.append(document_from_custodian(resource, record.identifier_system, record.local_id,
                                                             f"DocumentReference[{i}]"))  # fmt: skip
                except ValidationFailed:
                    logger.info("custodian listed a document the locator cannot take",
                                extra={"custodian": call.custodian_id})  # fmt: skip
            listed += refresh_documents(custodian=call.custodian, record=record, documents=documents)
            if job.prefetch:
                for entry in DocumentEntry.objects.filter(record=record, status=DocumentStatus.CURRENT).exclude(url=""):
                    prefetch_content(entry)
    except (CustodianFailed, CustodianTimeout) as error:
        _failed(call.pk, str(error), replay=attempt.replay)
        return
    _succeeded(call.pk, listed)


@transaction.atomic
def _succeeded(call_id: int, listed: int) -> None:
    call = CustodianCall.objects.select_for_update(of=("self",)).select_related("job").get(pk=call_id)
    call.status, call.documents, call.finished_at, call.last_error = CallStatus.DONE, listed, timezone.now(), ""
    call.next_attempt_at = None
    call.save()
    EndpointState.objects.filter(organization_id=call.custodian_id).update(consecutive_failures=0, open_until=None)
    DeadLetter.objects.filter(call=call, resolved=False).update(resolved=True)
    _settle(call.job)


@transaction.atomic
def _failed(call_id: int, error: str, *, replay: bool) -> None:
    call = CustodianCall.objects.select_for_update(of=("self",)).select_related("job", "custodian").get(pk=call_id)
    state = EndpointState.objects.select_for_update().get(organization=call.custodian)
    state.consecutive_failures += 1
    if state.consecutive_failures >= settings.EXCHANGE_BREAKER_FAILURES:
        state.open_until = timezone.now() + timedelta(seconds=settings.EXCHANGE_BREAKER_COOLDOWN_SECONDS)
    state.save()
    logger.warning("custodian call failed", extra={"custodian": call.custodian_id, "attempt": call.attempts})
    _retry_or_give_up(call, error, at=None, replay=replay)


def _retry_or_give_up(call: CustodianCall, error: str, *, at: object, replay: bool) -> None:
    now = timezone.now()
    wait = (at - now).total_seconds() if at else backoff_seconds(call.attempts)
    next_at = now + timedelta(seconds=wait)
    call.last_error = error[:300]
    out_of_time = next_at >= call.job.deadline and not replay
    if call.attempts >= settings.EXCHANGE_MAX_ATTEMPTS or out_of_time:
        call.status, call.finished_at, call.next_attempt_at = CallStatus.FAILED, now, None
        call.save()
        DeadLetter.objects.filter(call=call, resolved=False).update(resolved=True)  # one open letter per call
        DeadLetter.objects.create(call=call, error=call.last_error, attempts=call.attempts)
        _settle(call.job)
        return
    call.next_attempt_at = next_at
    call.save()
    _enqueue([call.pk], countdown=wait)


def sweep_jobs(stale_seconds: int = 30) -> int:
    """Jobs past their deadline end now (calls still waiting are recorded as not answered in time);
    waiting calls whose task was lost (a worker died) are sent again. Returns the jobs ended."""
    stale = timezone.now() - timedelta(seconds=stale_seconds)
    lost = CustodianCall.objects.filter(status=CallStatus.PENDING, job__status=JobStatus.RUNNING,
                                        job__deadline__gt=timezone.now())  # fmt: skip
    lost = lost.filter(Q(next_attempt_at__lt=stale) | Q(next_attempt_at__isnull=True, job__created_at__lt=stale))
    with transaction.atomic():
        _enqueue(list(lost.values_list("pk", flat=True)))
    count = 0
    for job in GatherJob.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING], deadline__lte=timezone.now()):
        with transaction.atomic():
            job.calls.filter(status=CallStatus.PENDING).update(
                status=CallStatus.TIMED_OUT, finished_at=timezone.now(), last_error="no answer before the deadline"
            )
            _settle(job)
        count += 1
    return count


@transaction.atomic
def replay_dead_letter(*, letter: DeadLetter, actor: Actor) -> None:
    """Run the failed call again from the start (a fresh set of attempts, past the job's deadline)."""
    letter = DeadLetter.objects.select_for_update(of=("self",)).select_related("call", "delivery").get(pk=letter.pk)
    if letter.resolved:
        raise ValidationFailed("this dead letter was resolved already")
    letter.replays += 1
    letter.replayed_at = timezone.now()
    letter.save(update_fields=["replays", "replayed_at"])
    if letter.delivery is not None:
        replay_delivery(letter.delivery)
        record_event(actor=actor, action=Action.EXECUTE, event_type="dead-letter-replay", resource_type="Subscription",
                     resource_id=str(letter.delivery.subscription_id), detail={"letter": letter.pk})  # fmt: skip
        return
    call = letter.call
    call.status, call.attempts, call.finished_at, call.next_attempt_at = CallStatus.PENDING, 0, None, None
    call.save()
    record_event(actor=actor, action=Action.EXECUTE, event_type="dead-letter-replay", resource_type="Task",
                 resource_id=str(call.job_id), detail={"letter": letter.pk})  # fmt: skip
    from hie.exchange.tasks import replay_call_task  # the tasks module imports this one

    transaction.on_commit(lambda: replay_call_task.delay(call.pk), robust=True)


def replay_dead_letters(*, letter_ids: list[int], actor: Actor) -> int:
    replayed = 0
    for letter in DeadLetter.objects.filter(pk__in=letter_ids, resolved=False):
        replay_dead_letter(letter=letter, actor=actor)
        replayed += 1
    return replayed


@transaction.atomic
def set_endpoint_paused(*, organization: Organization, paused: bool, actor: Actor) -> None:
    """Pause (or resume) every call and retry to one custodian's endpoint; resuming restarts waiting calls."""
    state, _ = EndpointState.objects.select_for_update().get_or_create(organization=organization)
    state.paused, state.paused_by_id = paused, actor.staff_user_id if paused else None
    if not paused:
        state.open_until, state.consecutive_failures = None, 0
    state.save()
    record_event(actor=actor, action=Action.UPDATE, event_type="endpoint-pause" if paused else "endpoint-resume",
                 resource_type="Organization", resource_id=str(organization.pk))  # fmt: skip
    if not paused:
        _enqueue(list(CustodianCall.objects.filter(custodian=organization, status=CallStatus.PENDING)
                      .values_list("pk", flat=True)))  # fmt: skip
