"""Recording audit events: the one function every path that touches patient data calls."""

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


def record_event(
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
    """Append one event to the chain, in the caller's transaction when there is one.

    Every request of the member API comes through here, so the head is read, the row written
    and the head moved with plain statements rather than model saves.
    """
    head_table = ChainHead._meta.db_table
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with transaction.atomic(), connection.cursor() as cursor:
        # Locking the head row orders concurrent writers, so no two events claim the same
        # predecessor and fork the chain.
        cursor.execute(f"SELECT last_sequence, last_hash FROM {head_table} WHERE id = 1{lock}")  # noqa: S608
        head = cursor.fetchone()
        if head is None:
            ChainHead.objects.get_or_create(pk=1)
            cursor.execute(f"SELECT last_sequence, last_hash FROM {head_table} WHERE id = 1{lock}")  # noqa: S608
            head = cursor.fetchone()
        last_sequence, last_hash = head
        event = AuditEvent(
            sequence=last_sequence + 1,
            recorded_at=timezone.now(),
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
            request_id=get_request_id() or "",
            detail=detail or {},
            previous_hash=last_hash,
        )
        event.row_hash = event.compute_hash()
        fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
        cursor.execute(
            f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(f.column for f in fields)}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING id",
            [f.get_db_prep_save(getattr(event, f.attname), connection) for f in fields],
        )
        event.pk = cursor.fetchone()[0]
        event._state.adding, event._state.db = False, connection.alias
        cursor.execute(
            f"UPDATE {head_table} SET last_sequence = %s, last_hash = %s WHERE id = 1",  # noqa: S608
            [event.sequence, event.row_hash],
        )
    return event


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
