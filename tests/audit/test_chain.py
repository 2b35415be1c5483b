"""The audit trail is append-only and hash-chained; tampering is found at the row tampered with."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from hie.audit.models import Action, AuditEvent, ChainVerification
from hie.audit.services import SYSTEM, Actor, first_broken_event, record_event, written_together
from hie.requestid import request_id_context


def record_three() -> list[AuditEvent]:
    return [
        record_event(
            actor=SYSTEM,
            action=Action.READ,
            event_type="patient-search",
            resource_type="Patient",
            person_euid=f"EUID{n}",
            purpose_of_use="TREAT",
            detail={"count": n},
        )
        for n in range(3)
    ]


def tamper(sql: str, params: list) -> None:
    """Change a row as an attacker with database access would: around the append-only trigger."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")  # a superuser skipping triggers
            cursor.execute(sql, params)
            cursor.execute("SET LOCAL session_replication_role = origin")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_update")
            cursor.execute("DROP TRIGGER audit_event_no_delete")
            cursor.execute(sql, params)


@pytest.mark.django_db
def test_events_form_a_chain_that_verifies():
    events = record_three()
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[1].previous_hash == events[0].row_hash
    assert first_broken_event() == (3, None)
    call_command("verify_audit_chain")
    assert ChainVerification.objects.get().intact


@pytest.mark.django_db
def test_events_held_in_a_block_are_appended_together_when_it_ends_even_if_it_raises():
    held = []

    def read_then_fail() -> None:
        with written_together():
            held.extend(record_three())
            with written_together():  # an inner block leaves them to the outer one
                held.append(record_event(actor=SYSTEM, action=Action.READ, event_type="patient-read"))
            assert not AuditEvent.objects.exists()
            raise RuntimeError("the request failed after its reads")

    with pytest.raises(RuntimeError):
        read_then_fail()
    stored = list(AuditEvent.objects.order_by("sequence"))
    assert [e.pk for e in stored] == [e.pk for e in held]  # in the order recorded
    assert [e.sequence for e in stored] == [1, 2, 3, 4]
    assert first_broken_event() == (4, None)
    record_event(actor=SYSTEM, action=Action.READ, event_type="patient-read")  # outside a block: at once
    assert AuditEvent.objects.count() == 5
    assert first_broken_event() == (5, None)


@pytest.mark.django_db
def test_changed_row_is_detected_at_that_row():
    events = record_three()
    tamper("UPDATE audit_auditevent SET person_euid = %s WHERE id = %s", ["EUID-other", events[1].pk])
    assert first_broken_event() == (2, 2)
    with pytest.raises(CommandError, match="broken at sequence 2"):
        call_command("verify_audit_chain")


@pytest.mark.django_db
def test_removed_row_is_detected():
    events = record_three()
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    assert first_broken_event()[1] == 2


@pytest.mark.django_db
def test_removed_last_row_is_detected():
    events = record_three()
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    assert first_broken_event()[1] == 3


@pytest.mark.django_db
def test_database_refuses_to_change_or_delete_events():
    event = record_three()[0]
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(outcome="8")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.django_db
def test_event_carries_the_request_id_and_actor(make_member):
    member = make_member()
    actor = Actor(
        organization_id=member.client.organization_id, api_client_id=member.client.pk, source_address="192.0.2.7"
    )
    with request_id_context("req-audit-1"):
        event = record_event(actor=actor, action=Action.READ, event_type="pix-query")
    event.refresh_from_db()
    assert (event.request_id, event.organization_id, event.source_address) == (
        "req-audit-1",
        member.client.organization_id,
        "192.0.2.7",
    )


def test_token_issuance_is_audited(make_member, get_token):
    member = make_member()
    get_token(member)
    event = AuditEvent.objects.get(event_type="token-issued")
    assert event.api_client_id == member.client.pk
    assert event.organization_id == member.client.organization_id
    assert first_broken_event()[1] is None
