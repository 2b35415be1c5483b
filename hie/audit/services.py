"""Recording audit events: the one function every path that touches patient data calls."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from hie.audit.models import Action, AuditEvent, ChainHead, ChainVerification, Outcome
from hie.requestid import get_request_id


@dataclass(frozen=True)
class Actor:
    """Who acted: a member's API client (and so its organization), a staff user, or the node itself."""

    organization_id: int | None = None
    api_client_id: int | None = None
    staff_user_id: int | None = None
    source_address: str = ""

    @classmethod
    def from_request(cls, request: object) -> "Actor":
        client = getattr(request, "api_client", None)
        user = getattr(request, "user", None)
        return cls(
            organization_id=client.organization_id if client else None,
            api_client_id=client.pk if client else None,
            staff_user_id=user.pk if user is not None and user.is_authenticated else None,
            source_address=request.META.get("REMOTE_ADDR", ""),
        )


SYSTEM = Actor()
INSERT_ROWS = 200  # rows per INSERT statement (SQLite limits the parameters of one statement)


def new_event(
    *,
    actor: Actor,
    action: Action,
    event_type: str,
    resource_type: str = "",
    resource_id: str = "",
    person_euid: str = "",
    purpose_of_use: str = "",
    outcome: Outcome = Outcome.SUCCESS,
    detail: dict | None = None,
) -> AuditEvent:
    """An event not yet in the chain: record_event appends one, append_events many at once."""
    return AuditEvent(
        organization_id=actor.organization_id,
        api_client_id=actor.api_client_id,
        staff_user_id=actor.staff_user_id,
        source_address=actor.source_address,
        action=action,
        event_type=event_type,
        resource_type=resource_type,
        resource_id=str(resource_id),
        person_euid=person_euid,
        purpose_of_use=purpose_of_use,
        outcome=outcome,
        detail=detail or {},
    )


# Events recorded inside written_together(), waiting to be appended when it ends.
_held: ContextVar[list[AuditEvent] | None] = ContextVar("audit_events_held", default=None)


def record_event(**fields: object) -> AuditEvent:
    """Append one event (the arguments of new_event) to the chain, in the caller's transaction when there is one.

    Inside written_together() the event is held and appended with the block's others when it ends.
    """
    event = new_event(**fields)
    held = _held.get()
    if held is not None:
        held.append(event)
    else:
        append_events([event])
    return event


@contextmanager
def written_together() -> Iterator[None]:
    """Hold the events recorded in the block and append them all when it ends, whether it returns
    or raises: one lock of the chain's head and one insert instead of one each.

    Only for work that changes nothing but the audit trail (a read request): an event held here
    is written even if a transaction inside the block rolled back.
    """
    if _held.get() is not None:  # already inside a block: its end writes these too
        yield
        return
    token = _held.set([])
    try:
        yield
    finally:
        events = _held.get()
        _held.reset(token)
        append_events(events)


def append_events(events: list[AuditEvent]) -> None:
    """Append unsaved events to the chain in list order, under one lock of the chain's head.

    Every request of the member API and every HL7 message comes through here, so the head is
    read, the rows written and the head moved with plain statements rather than model saves.
    """
    if not events:
        return
    head_table = ChainHead._meta.db_table
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    # No savepoint: in a caller's transaction, a failure here fails the caller's work as well.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # Locking the head row orders concurrent writers, so no two events claim the same
        # predecessor and fork the chain.
        cursor.execute(f"SELECT last_sequence, last_hash FROM {head_table} WHERE id = 1{lock}")  # noqa: S608
        head = cursor.fetchone()
        if head is None:
            ChainHead.objects.get_or_create(pk=1)
            cursor.execute(f"SELECT last_sequence, last_hash FROM {head_table} WHERE id = 1{lock}")  # noqa: S608
            head = cursor.fetchone()
        sequence, previous = head
        now, request_id = timezone.now(), get_request_id() or ""
        for event in events:
            sequence += 1
            event.sequence, event.recorded_at, event.previous_hash = sequence, now, previous
            event.request_id = event.request_id or request_id
            event.row_hash = previous = event.compute_hash()
        fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
        row = f"({', '.join(['%s'] * len(fields))})"
        move_head = f"UPDATE {head_table} SET last_sequence = %s, last_hash = %s WHERE id = 1"  # noqa: S608
        # PostgreSQL moves the head in the statement that inserts the last rows: a round trip fewer.
        together = connection.vendor == "postgresql"
        for start in range(0, len(events), INSERT_ROWS):
            chunk = events[start : start + INSERT_ROWS]
            insert = (
                f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(f.column for f in fields)}) "  # noqa: S608
                f"VALUES {', '.join([row] * len(chunk))} RETURNING id"
            )
            parameters = [f.get_db_prep_save(getattr(event, f.attname), connection) for event in chunk for f in fields]
            if together and start + INSERT_ROWS >= len(events):
                # Ids come from a sequence in the order of the rows, so ordering by id keeps the list's order.
                insert = f"WITH inserted AS ({insert}), head AS ({move_head}) SELECT id FROM inserted ORDER BY id"  # noqa: S608
                parameters += [sequence, previous]
            cursor.execute(insert, parameters)
            for event, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                event.pk = pk
                event._state.adding, event._state.db = False, connection.alias
        if not together:
            cursor.execute(move_head, [sequence, previous])


def first_broken_event(batch_size: int = 2000) -> tuple[int, int | None]:
    """Walk the chain in order; return (rows checked, sequence of the first row that does not verify)."""
    expected_previous = "0" * 64
    expected_sequence = 1
    checked = 0
    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=batch_size):
        checked += 1
        if (
            event.sequence != expected_sequence
            or event.previous_hash != expected_previous
            or event.compute_hash() != event.row_hash
        ):
            return checked, expected_sequence
        expected_previous = event.row_hash
        expected_sequence += 1
    head = ChainHead.objects.filter(pk=1).first()
    if head is not None and (head.last_sequence != expected_sequence - 1 or head.last_hash != expected_previous):
        # Rows were removed from the end of the chain.
        return checked, expected_sequence
    return checked, None


def verify_chain() -> ChainVerification:
    checked, broken = first_broken_event()
    return ChainVerification.objects.create(
        rows_checked=checked, first_broken_sequence=broken, request_id=get_request_id() or ""
    )
