"""Receiving HL7 v2 messages into the inbox and applying them to the master patient index.

The listener calls receive_message for each framed message: it stores the raw message and
decides the acknowledgement in one transaction, and the ACK goes out only after that commit.
Applying a message to the index is a Celery task that drains each organization's inbox in
arrival order, so a worker that dies mid-way leaves the message waiting for the next run.
"""

import logging
import uuid

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from hie.audit.models import Action, Outcome
from hie.audit.services import Actor, record_event
from hie.exceptions import HieError
from hie.exchange.models import EventKind
from hie.exchange.notifications import emit
from hie.hl7v2 import messages
from hie.hl7v2.models import InboundMessage, MessageState
from hie.orgs.models import Organization
from matching.locks import lock_blocking_keys
from matching.models import PatientRecord, Source
from matching.selectors import current_link
from matching.services import merge_at_source, receive_registration, unlink_record

logger = logging.getLogger(__name__)


def _store(raw: bytes, peer: str, head: messages.Header | None, organization: Organization | None, state: str,
           code: str, problem: messages.MessageProblem | None) -> InboundMessage:  # fmt: skip
    message = InboundMessage.objects.create(
        organization=organization,
        sending_facility=head.sending_facility if head else "",
        control_id=head.control_id[:199] if head else "",
        message_type=head.message_type[:30] if head else "",
        version=head.version[:12] if head else "",
        raw=raw,
        peer=peer,
        state=state,
        ack_code=code,
        error=(f"{problem.location}: {problem.reason}" if problem else "")[:300],
    )
    record_event(
        actor=Actor(organization_id=organization.pk if organization else None, source_address=peer),
        action=Action.CREATE,
        event_type="hl7-message",
        resource_type="Patient",
        resource_id=str(message.pk),
        outcome=Outcome.SUCCESS if code == "AA" else Outcome.MINOR_FAILURE,
        detail={"type": message.message_type, "ack": code, "state": state},
    )
    return message


def receive_message(raw: bytes, peer: str = "") -> bytes | None:
    """Store one message and answer its ACK (None: no MSH to answer, close the connection)."""
    ack_id = uuid.uuid4().hex[:20]
    head, organization = None, None
    try:
        text = messages.decode(raw)
        parsed = messages.parse(text)
        head = messages.header(parsed)
        messages.check_header(head)
        organization = (
            Organization.objects.filter(hl7_facility=head.sending_facility, active=True)
            .prefetch_related("identifier_systems")
            .first()
        )
        if organization is None:
            raise messages.MessageProblem("AR", "204", "MSH-4: the sending facility is not a member", "MSH^1^4")
        state = _check_content(parsed, head, organization)
    except messages.MessageProblem as problem:
        if head is None:
            with transaction.atomic():
                _store(raw, peer, None, None, MessageState.REJECTED, "AR", problem)
            logger.warning("HL7 message without a readable MSH; connection closed", extra={"peer": peer})
            return None
        with transaction.atomic():
            _store(raw, peer, head, organization, MessageState.ERROR if problem.ack_code == "AE" else
                   MessageState.REJECTED, problem.ack_code, problem)  # fmt: skip
        return messages.ack(head, problem.ack_code, ack_id=ack_id, problem=problem)
    try:
        with transaction.atomic():
            _store(raw, peer, head, organization, state, "AA", None)
            if state == MessageState.RECEIVED:
                enqueue_processing(organization.pk)
    except IntegrityError:
        # The facility sent this control id before and it was accepted: acknowledge, do not apply twice.
        with transaction.atomic():
            _store(raw, peer, head, organization, MessageState.DUPLICATE, "AA", None)
    return messages.ack(head, "AA", ack_id=ack_id)


def _check_content(parsed: object, head: messages.Header, organization: Organization) -> str:
    """What the index will do with the message; problems found now are answered AE at once."""
    if head.event in messages.REGISTERING_EVENTS:
        messages.patient_from_pid(parsed, organization)
    elif head.event in messages.MERGE_EVENTS:
        messages.patient_from_pid(parsed, organization)
        messages.merged_identifier(parsed, organization)
    elif head.event in messages.UNLINK_EVENTS:
        messages.patient_from_pid(parsed, organization)
        messages.second_patient(parsed, organization)
    else:
        return MessageState.STORED
    return MessageState.RECEIVED


def enqueue_processing(organization_id: int) -> None:
    """Start a drain of the organization's inbox after commit, unless one is already due to start
    (it will see this message: a drain forgets the mark when it starts, then reads the inbox)."""
    from hie.hl7v2.tasks import process_inbox

    def send() -> None:
        if cache.add(_drain_mark(organization_id), 1, timeout=30):
            process_inbox.delay(organization_id)

    transaction.on_commit(send)


def _drain_mark(organization_id: int) -> str:
    return f"hl7-drain-due:{organization_id}"


def process_inbox(organization_id: int, limit: int = 1000) -> int:
    """Apply the organization's waiting messages in arrival order; returns how many were handled."""
    cache.delete(_drain_mark(organization_id))
    handled = 0
    while handled < limit:
        with transaction.atomic():
            # One drainer per organization at a time keeps an A08 from overtaking its A01.
            lock_blocking_keys([f"hl7-inbox:{organization_id}"])
            message = (
                InboundMessage.objects.select_for_update()
                .filter(organization_id=organization_id, state=MessageState.RECEIVED)
                .order_by("pk")
                .first()
            )
            if message is None:
                return handled
            message.attempts += 1
            try:
                with transaction.atomic():
                    apply_message(message)
                message.state, message.error = MessageState.PROCESSED, ""
            except HieError as error:
                message.state, message.error = MessageState.FAILED, str(error)[:300]
            except messages.MessageProblem as problem:
                message.state, message.error = MessageState.FAILED, f"{problem.location}: {problem.reason}"[:300]
            except Exception as error:
                logger.exception("HL7 message could not be applied", extra={"message": message.pk})
                message.state, message.error = MessageState.FAILED, f"internal error ({type(error).__name__})"
            message.processed_at = timezone.now()
            message.save(update_fields=["state", "error", "attempts", "processed_at"])
        handled += 1
    enqueue_processing(organization_id)  # more are waiting: another task continues
    return handled


def apply_message(message: InboundMessage) -> None:
    parsed = messages.parse(messages.decode(bytes(message.raw)))
    head = messages.header(parsed)
    organization = Organization.objects.prefetch_related("identifier_systems").get(pk=message.organization_id)
    actor = Actor(organization_id=organization.pk)
    patient = messages.patient_from_pid(parsed, organization)
    registration = {"organization": organization, "identifier_system": patient.identifier_system,
                    "local_id": patient.local_id, "demographics": patient.demographics, "source": Source.HL7,
                    "actor": actor}  # fmt: skip
    registered = receive_registration(**registration)
    if head.event in messages.ADMISSION_EVENTS:
        emit(EventKind.ADMISSION, record=registered.record, source=organization,
             detail={"event": f"ADT^{head.event}"})  # fmt: skip
    if head.event in messages.MERGE_EVENTS:
        retired = messages.merged_identifier(parsed, organization)
        merge_at_source(organization=organization, retired=retired,
                        surviving=(patient.identifier_system, patient.local_id), actor=actor)  # fmt: skip
    elif head.event in messages.UNLINK_EVENTS:
        system, local_id = messages.second_patient(parsed, organization)
        first = PatientRecord.objects.get(organization=organization, identifier_system=patient.identifier_system,
                                          local_id=patient.local_id)  # fmt: skip
        second = PatientRecord.objects.filter(organization=organization, identifier_system=system,
                                              local_id=local_id).first()  # fmt: skip
        if second is None:
            raise messages.MessageProblem("AE", "204", "the second patient of the A37 is not registered", "PID^2^3")
        first_link, second_link = current_link(first.pk), current_link(second.pk)
        if first_link and second_link and first_link.person_id == second_link.person_id:
            unlink_record(record=second, actor=actor, reason="unlinked at the source (A37)")


def replay(*, states: tuple[str, ...] = (MessageState.FAILED,), organization_id: int | None = None) -> int:
    """Put failed (or received) messages back in line and start processing; returns how many."""
    chosen = InboundMessage.objects.filter(state__in=states, organization__isnull=False)
    if organization_id is not None:
        chosen = chosen.filter(organization_id=organization_id)
    with transaction.atomic():
        organizations = set(chosen.values_list("organization_id", flat=True))
        count = chosen.update(state=MessageState.RECEIVED, error="")
        for org_id in organizations:
            enqueue_processing(org_id)
    return count
