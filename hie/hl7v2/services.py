"""Receiving HL7 v2 messages into the inbox and applying them to the master patient index.

The listener calls receive_messages with the framed messages waiting: it stores the raw messages
and decides their acknowledgements in one transaction, and the ACK goes out only after that commit.
Applying a message to the index is a Celery task that drains each organization's inbox in
arrival order, so a worker that dies mid-way leaves the message waiting for the next run.
"""

import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from hie.audit.models import Action, Outcome
from hie.audit.services import Actor, append_events, new_event
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


# The fields the listener checks before it acknowledges (PID-3, -7, -8; MRG-1); the whole message
# is read when it is applied.
READ_ON_RECEIPT = {"PID": 8, "MRG": 1}


@dataclass(frozen=True)
class Peer:
    """What a connection proves about its sender: its address and, over TLS, its client certificate."""

    host: str = ""
    port: int = 0
    certificate_sha256: str = ""  # of the certificate the listener verified against its client CA

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" if self.host else ""


@dataclass(frozen=True)
class Framed:
    """One framed message as the listener read it: its bytes (only the first of them when it was
    over HL7_MAX_MESSAGE_BYTES), the connection it came on, and, if it was over, its size."""

    raw: bytes
    peer: Peer = Peer()
    oversize: int | None = None  # the size of a message over the limit (raw is then its head)


# One answer for a facility that is no member, an inactive member, and a sender that is not
# proven to be the member MSH-4 names: none tells a stranger which facility codes exist.
UNAUTHENTICATED = messages.MessageProblem(
    "AR", "204", "MSH-4: the sender is not authenticated as this sending facility", "MSH^1^4"
)


@dataclass
class Receipt:
    """One received message and what the node answers: the state it is stored in and the ACK code."""

    raw: bytes
    peer: Peer
    head: messages.Header | None = None
    organization: Organization | None = None
    state: str = MessageState.RECEIVED
    code: str = "AA"
    problem: messages.MessageProblem | None = None
    parsed: object = None  # the segments read on receipt (python-hl7)

    def refuse(self, problem: messages.MessageProblem) -> None:
        self.problem, self.code = problem, problem.ack_code
        self.state = MessageState.ERROR if problem.ack_code == "AE" else MessageState.REJECTED

    @property
    def accepted(self) -> bool:
        return self.code == "AA" and self.state != MessageState.DUPLICATE


def receive_messages(batch: list[Framed]) -> list[bytes | None]:
    """Store messages received together and answer each one's ACK, in order (None: close that connection).

    All of them are stored and audited in one transaction, and the listener sends the ACKs only
    after it commits: messages arriving at the same moment on many connections share one commit.
    A message is the member's only if its connection proves that member (certificate or
    address); any other is stored without a member and refused with AR, so nothing applies it.
    """
    receipts = [_read(framed) for framed in batch]
    _judge(receipts)
    try:
        with transaction.atomic():
            _mark_repeats(receipts)
            _store(receipts)
    except IntegrityError:
        # Another listener stored one of these control ids between the check and the insert:
        # each message again on its own, so only the repeat is marked as one.
        for receipt in receipts:
            _store_one(receipt)
    for receipt in receipts:
        if receipt.head is None:
            logger.warning("HL7 message without a readable MSH; connection closed", extra={"peer": str(receipt.peer)})
    return [_answer(receipt) for receipt in receipts]


def _read(framed: Framed) -> Receipt:
    receipt = Receipt(framed.raw, framed.peer)
    try:
        text = messages.decode(framed.raw)
        if framed.oversize is not None:
            # Only the head was kept: its MSH is enough to say why the message is refused.
            receipt.head = messages.header(messages.parse(text[: text.index("\r") + 1]))
            raise messages.MessageProblem(
                "AR", "207", f"the message is larger than the limit of {settings.HL7_MAX_MESSAGE_BYTES} bytes", "MSH"
            )
        parsed = messages.parse(text, only=READ_ON_RECEIPT)
        receipt.head = messages.header(parsed)
        messages.check_header(receipt.head)
    except messages.MessageProblem as problem:
        receipt.refuse(problem)
        return receipt
    receipt.parsed = parsed
    return receipt


def _judge(receipts: list[Receipt]) -> None:
    """The sending member of each message, and whether its content can be applied (AE now if not)."""
    readable = [r for r in receipts if r.problem is None]
    members = _members({r.head.sending_facility for r in readable})
    for receipt in readable:
        member = members.get(receipt.head.sending_facility)
        try:
            if member is None or not member.proves_hl7_sender(
                address=receipt.peer.host, certificate_sha256=receipt.peer.certificate_sha256
            ):
                raise UNAUTHENTICATED
            receipt.organization = member
            receipt.state = _check_content(receipt.parsed, receipt.head, receipt.organization)
        except messages.MessageProblem as problem:
            receipt.refuse(problem)


# Members by sending facility, as the listener last read them: facility -> (read at, member or None).
_facilities: dict[str, tuple[float, Organization | None]] = {}


def _members(facilities: set[str]) -> dict[str, Organization]:
    """The active member behind each facility; read again after HL7_MEMBER_CACHE_SECONDS."""
    now, window = time.monotonic(), settings.HL7_MEMBER_CACHE_SECONDS
    stale = {f for f in facilities if f not in _facilities or now - _facilities[f][0] >= window}
    if stale:
        found: dict[str, Organization] = {}
        for organization in (Organization.objects.filter(hl7_facility__in=stale, active=True)
                             .prefetch_related("identifier_systems", "hl7_certificates", "hl7_source_networks")
                             .order_by("pk")):  # fmt: skip
            found.setdefault(organization.hl7_facility, organization)
        for facility in stale:
            _facilities[facility] = (now, found.get(facility))
    return {f: _facilities[f][1] for f in facilities if _facilities[f][1] is not None}


def forget_members() -> None:
    """Read every member again on the next message (after a member's facility or systems change)."""
    _facilities.clear()


def _mark_repeats(receipts: list[Receipt]) -> None:
    """A control id the facility sent before (or earlier in this batch) is acknowledged, not applied twice."""
    accepted = [r for r in receipts if r.accepted]
    if not accepted:
        return
    seen = _accepted_before([(r.head.sending_facility, r.head.control_id[:199]) for r in accepted])
    for receipt in accepted:
        key = (receipt.head.sending_facility, receipt.head.control_id[:199])
        if key in seen:
            receipt.state = MessageState.DUPLICATE
        seen.add(key)


def _accepted_before(keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (facility, control id) pairs among keys that the inbox already accepted."""
    facilities, control_ids = [k[0] for k in keys], [k[1] for k in keys]
    table = InboundMessage._meta.db_table
    if connection.vendor == "postgresql":
        # One index probe per key whatever the table's statistics say (with two ANY arrays a fresh
        # table was planned as a scan of the facility's messages); arrays keep the statement's text
        # constant, so psycopg prepares it once per connection.
        sql = (
            "SELECT m.sending_facility, m.control_id FROM unnest(%s::text[], %s::text[]) AS k(facility, id) "  # noqa: S608
            f"JOIN {table} m ON m.sending_facility = k.facility AND m.control_id = k.id "
            "WHERE m.ack_code = 'AA' AND NOT m.state = %s"
        )
        parameters = [facilities, control_ids, MessageState.DUPLICATE]
    else:
        marks = ", ".join(["%s"] * len(keys))
        sql = (
            f"SELECT sending_facility, control_id FROM {table} WHERE ack_code = 'AA' AND NOT state = %s "  # noqa: S608
            f"AND sending_facility IN ({marks}) AND control_id IN ({marks})"
        )
        parameters = [MessageState.DUPLICATE, *facilities, *control_ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return set(cursor.fetchall())


def _store(receipts: list[Receipt]) -> None:
    rows = [
        InboundMessage(
            organization=r.organization,
            sending_facility=r.head.sending_facility if r.head else "",
            control_id=r.head.control_id[:199] if r.head else "",
            message_type=r.head.message_type[:30] if r.head else "",
            version=r.head.version[:12] if r.head else "",
            raw=r.raw,
            peer=str(r.peer)[:64],
            state=r.state,
            ack_code=r.code,
            error=(f"{r.problem.location}: {r.problem.reason}" if r.problem else "")[:300],
        )
        for r in receipts
    ]
    InboundMessage.objects.bulk_create(rows)
    events = []
    for receipt, row in zip(receipts, rows, strict=True):
        events.append(new_event(
            actor=Actor(organization_id=row.organization_id, source_address=str(receipt.peer)[:64]),
            action=Action.CREATE, event_type="hl7-message", resource_type="Patient", resource_id=str(row.pk),
            outcome=Outcome.SUCCESS if receipt.code == "AA" else Outcome.MINOR_FAILURE,
            detail={"type": row.message_type, "ack": receipt.code, "state": receipt.state},
        ))  # fmt: skip
    append_events(events)
    for organization_id in {r.organization.pk for r in receipts if r.state == MessageState.RECEIVED and r.accepted}:
        enqueue_processing(organization_id)


def _store_one(receipt: Receipt) -> None:
    try:
        with transaction.atomic():
            _mark_repeats([receipt])
            _store([receipt])
    except IntegrityError:
        receipt.state = MessageState.DUPLICATE
        with transaction.atomic():
            _store([receipt])


def _answer(receipt: Receipt) -> bytes | None:
    if receipt.head is None:
        return None
    return messages.ack(receipt.head, receipt.code, ack_id=uuid.uuid4().hex[:20], problem=receipt.problem)


def _check_content(parsed: object, head: messages.Header, organization: Organization) -> str:
    """What the index will do with the message; problems found now are answered AE at once."""
    if head.event in messages.REGISTERING_EVENTS:
        messages.check_pid(parsed, organization)
    elif head.event in messages.MERGE_EVENTS:
        messages.check_pid(parsed, organization)
        messages.merged_identifier(parsed, organization)
    elif head.event in messages.UNLINK_EVENTS:
        messages.check_pid(parsed, organization)
        messages.second_patient(parsed, organization)
    else:
        return MessageState.STORED
    return MessageState.RECEIVED


def enqueue_processing(organization_id: int) -> None:
    """Start a drain of the organization's inbox once this transaction commits.

    Every commit that leaves a member's message waiting sends one task, with no "already due"
    mark to skip it: a mark kept in one process's cache was never cleared by the worker, and
    the messages of a burst's tail waited for the periodic sweep. Drains are idempotent (one at
    a time per member, each message applied under that lock, and a drain stops only when it
    finds nothing waiting), so a task that finds its messages taken by another costs one query.
    """
    from hie.hl7v2.tasks import process_inbox

    # robust: a broker that is down must not undo the ACK of messages already committed; they
    # wait in the inbox for the sweep (beat) or `replay_inbox --waiting`.
    transaction.on_commit(lambda: process_inbox.delay(organization_id), robust=True)


def process_inbox(organization_id: int, limit: int = 1000) -> int:
    """Apply the organization's waiting messages in arrival order; returns how many were handled."""
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
            applied: list[PatientRecord] = []
            try:
                with transaction.atomic():
                    applied = apply_message(message)
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
            _audit_application(message, applied)
        handled += 1
    enqueue_processing(organization_id)  # more are waiting: another task continues
    return handled


def _audit_application(message: InboundMessage, records: list[PatientRecord]) -> None:
    """One event per patient the message changed, naming the patient's enterprise id as it is now
    (for an A40 the surviving person, for an A37 each of the two); a message that failed before
    it reached a patient leaves one event with no patient."""
    applied = message.state == MessageState.PROCESSED
    actor = Actor(organization_id=message.organization_id)
    events = [
        new_event(actor=actor, action=Action.UPDATE, event_type="hl7-apply", resource_type="Patient",
                  resource_id=str(record.pk) if record else "", person_euid=_euid_of(record) if record else "",
                  outcome=Outcome.SUCCESS if applied else Outcome.MINOR_FAILURE,
                  detail={"message": message.pk, "type": message.message_type, "state": message.state})
        for record in records or [None]
    ]  # fmt: skip
    append_events(events)


def _euid_of(record: PatientRecord) -> str:
    link = current_link(record.pk)
    return link.person.euid if link else ""


def apply_message(message: InboundMessage) -> list[PatientRecord]:
    """Apply one message to the index; the records it changed (the PID patient first)."""
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
        return [registered.record, second]
    return [registered.record]


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
