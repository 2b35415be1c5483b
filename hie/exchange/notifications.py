"""Notifying members of events about their patients: outbox, fan-out, signed webhook delivery.

`emit()` writes an OutboxEvent in the caller's transaction, so an event exists exactly when its
change committed. The dispatcher fans an event out to the subscriptions of the members that hold
a confirmed record of the person (not the member whose act it reports, and only where
consent.decide() lets that member see the person for treatment). Each delivery is POSTed with the
event id and an HMAC-SHA256 signature of the body, at least once: retried with backoff, then
dead-lettered and replayable. Receivers drop repeats by the event id.
"""

import hashlib
import hmac
import json
import logging
import secrets
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent.decide import decide
from hie.exceptions import ValidationFailed
from hie.exchange.models import DeadLetter, Delivery, DeliveryStatus, EventKind, OutboxEvent, Subscription
from hie.exchange.retries import backoff_seconds
from hie.orgs.models import Organization
from matching.models import Link, LinkState, PatientRecord, Person

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-HIE-Signature"
EVENT_ID_HEADER = "X-HIE-Event-Id"
NOTIFY_PURPOSE = "TREAT"


def emit(kind: EventKind, *, person: Person | None = None, record: PatientRecord | None = None,
         source: Organization | None = None, detail: dict | None = None) -> OutboxEvent | None:  # fmt: skip
    """Record an event in the caller's transaction; it is dispatched after the commit."""
    # Nobody listens: no outbox row for every registration of a busy node. (Subscriptions are few:
    # a handful per member; JSON containment is not portable to SQLite.)
    listened = Subscription.objects.filter(active=True).values_list("events", flat=True)
    if not any(kind.value in events for events in listened):
        return None
    event = OutboxEvent.objects.create(kind=kind, person=person, record=record, source=source, detail=detail or {})
    from hie.exchange.tasks import dispatch_outbox_task  # the tasks module imports this one

    # robust: a notification that cannot be sent now never undoes or breaks the change it reports
    transaction.on_commit(lambda: dispatch_outbox_task.delay(), robust=True)
    return event


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def create_subscription(*, organization: Organization, endpoint: str, events: list[str]) -> Subscription:
    unknown = set(events) - set(EventKind.values)
    if not events or unknown:
        raise ValidationFailed("events must be some of: " + ", ".join(EventKind.values))
    return Subscription.objects.create(organization=organization, endpoint=endpoint, events=sorted(set(events)),
                                       secret=secrets.token_hex(32))  # fmt: skip


def _current_person(event: OutboxEvent) -> Person | None:
    from matching.selectors import confirmed_person_of, person_by_euid

    if event.person is not None:
        return person_by_euid(event.person.euid)
    return confirmed_person_of(event.record) if event.record is not None else None


def dispatch_outbox(limit: int = 500, max_wait_seconds: int = 3600) -> int:
    """Fan waiting events out to deliveries; returns how many events were dispatched."""
    dispatched = 0
    deliveries: list[int] = []
    with transaction.atomic():
        events = OutboxEvent.objects.select_for_update(skip_locked=True).filter(dispatched=False).order_by("pk")
        for event in events[:limit]:
            person = _current_person(event)
            if person is None:
                if event.created_at < timezone.now() - timedelta(seconds=max_wait_seconds):
                    event.dispatched = True  # the record never found its person; nothing to tell
                    event.save(update_fields=["dispatched"])
                continue  # waiting for matching; the sweep looks again
            holders = set(
                Link.objects.filter(person=person, state=LinkState.MATCH, record__active=True).values_list(
                    "record__organization_id", flat=True
                )
            ) - {event.source_id}
            for subscription in Subscription.objects.filter(active=True, organization_id__in=holders).select_related(
                "organization"
            ):
                if event.kind not in subscription.events:
                    continue
                if not decide(person, subscription.organization, NOTIFY_PURPOSE).permitted:
                    continue
                delivery, created = Delivery.objects.get_or_create(event=event, subscription=subscription)
                if created:
                    deliveries.append(delivery.pk)
            event.person = person
            event.dispatched = True
            event.save(update_fields=["person", "dispatched"])
            dispatched += 1
        _enqueue(deliveries)
    return dispatched


def _enqueue(delivery_ids: list[int], countdown: float = 0) -> None:
    from hie.exchange.tasks import deliver_task  # the tasks module imports this one

    for delivery_id in delivery_ids:
        transaction.on_commit(lambda d=delivery_id: deliver_task.apply_async((d,), countdown=countdown), robust=True)


def payload(delivery: Delivery) -> bytes:
    """The body a member receives: ids and references only (its own identifiers of the patient, the EUID)."""
    event = delivery.event
    person = event.person
    own = Link.objects.filter(person=person, state=LinkState.MATCH, record__active=True,
                              record__organization_id=delivery.subscription.organization_id)  # fmt: skip
    body = {
        "id": str(event.event_id),
        "type": event.kind,
        "occurredAt": event.created_at.isoformat(),
        "patient": {
            "euid": person.euid,
            "identifiers": sorted(
                f"{s}|{v}" for s, v in own.values_list("record__identifier_system", "record__local_id")
            ),
        },
        **({"source": f"Organization/{event.source_id}"} if event.source_id else {}),
        **event.detail,
    }
    return json.dumps(body, sort_keys=True).encode()


def deliver(delivery_id: int, *, replay: bool = False) -> None:
    with transaction.atomic():
        # Locking the delivery: a retry and a replay never post the same delivery at once.
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("event__person", "subscription")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
    body = payload(delivery)
    subscription = delivery.subscription
    headers = {"Content-Type": "application/json", EVENT_ID_HEADER: str(delivery.event.event_id),
               SIGNATURE_HEADER: sign(subscription.secret, body)}  # fmt: skip
    try:
        answer = requests.post(subscription.endpoint, data=body, headers=headers,
                               timeout=settings.NOTIFY_TIMEOUT_SECONDS)  # fmt: skip
        error = "" if 200 <= answer.status_code < 300 else f"the webhook answered {answer.status_code}"
    except requests.Timeout:
        error = "the webhook did not answer in time"
    except requests.RequestException:
        error = "the webhook could not be reached"
    _settle(delivery.pk, error)


@transaction.atomic
def _settle(delivery_id: int, error: str) -> None:
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    now = timezone.now()
    if not error:
        delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, now, ""
        delivery.save()
        DeadLetter.objects.filter(delivery=delivery, resolved=False).update(resolved=True)
        return
    delivery.last_error = error
    logger.warning("webhook delivery failed", extra={"subscription": delivery.subscription_id,
                                                     "attempt": delivery.attempts})  # fmt: skip
    if delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        delivery.save()
        DeadLetter.objects.filter(delivery=delivery, resolved=False).update(resolved=True)
        DeadLetter.objects.create(delivery=delivery, kind="notification", error=error, attempts=delivery.attempts)
        return
    wait = backoff_seconds(delivery.attempts)
    delivery.next_attempt_at = now + timedelta(seconds=wait)
    delivery.save()
    _enqueue([delivery.pk], countdown=wait)


def replay_delivery(delivery: Delivery) -> None:
    """A dead-lettered delivery goes out again with a fresh set of attempts (same event id)."""
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=None)
    _enqueue([delivery.pk])
