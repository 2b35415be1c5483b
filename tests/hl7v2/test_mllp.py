"""HL7 v2 ADT intake through a real MLLP socket, with python-hl7 as the sending system."""

import asyncio
import threading

import hl7
import pytest
from django.core.management import call_command
from django.db import connection as database
from hl7.mllp import open_hl7_connection

from hie.audit.models import AuditEvent
from hie.hl7v2 import messages, services
from hie.hl7v2.listener import _receive
from hie.hl7v2.models import InboundMessage, MessageState
from matching.models import Link, LinkState, PatientRecord
from tests.hl7v2.conftest import adt, hl7_member, send

OID = "2.16.840.1.113883.3.7001.1"
LOCAL = services.Peer(host="127.0.0.1", port=40000)


def pid(mrn: str, *, family: str = "Quintanilla", given: str = "Marisol", middle: str = "Ines",
        born: str = "19840719", sex: str = "F", street: str = "418 Alder Creek Rd", city: str = "Fairview",
        authority: str = f"RIVERSIDE&{OID}&ISO", ssn: str = "512-44-3187") -> str:  # fmt: skip
    """PID-2 onwards."""
    fields = [""] * 18  # PID-2 .. PID-19
    fields[1] = f"{mrn}^^^{authority}^MR" if mrn else ""  # PID-3
    fields[3] = f"{family}^{given}^{middle}"  # PID-5
    fields[5] = born  # PID-7
    fields[6] = sex  # PID-8
    fields[9] = f"{street}^^{city}^OR^97024^USA^H"  # PID-11
    fields[11] = "^PRN^PH^^^503^5550142"  # PID-13
    fields[17] = ssn  # PID-19
    return "|".join(fields)


def code(ack) -> str:
    return str(ack.segment("MSA")[1])


def err_location(ack) -> str:
    return str(ack.segment("ERR")[2])


def test_a_batch_of_admissions_creates_records_and_links(mllp, facility):
    lakeside = hl7_member("Lakeside", "2.16.840.1.113883.3.7002.1", "LAKESIDE")
    acks = send(
        mllp,
        adt("A04", "M1", pid("R100")),
        adt(
            "A01",
            "M2",
            pid(
                "R200",
                family="Oyelaran",
                given="Tobiloba",
                middle="",
                born="20010211",
                sex="M",
                street="9 Elm St",
                ssn="",
            ),
        ),
        adt("A28", "M3", pid("L900", given="Mari", authority="LAKESIDE"), facility="LAKESIDE"),
    )
    assert [code(a) for a in acks] == ["AA", "AA", "AA"]
    assert all(str(a.segment("MSA")[2]) == f"M{n}" for n, a in enumerate(acks, start=1))
    assert InboundMessage.objects.filter(state=MessageState.PROCESSED).count() == 3
    riverside = PatientRecord.objects.get(local_id="R100")
    assert riverside.identifier_system == f"urn:oid:{OID}"
    assert (riverside.family_name, riverside.middle_name, str(riverside.birth_date)) == ("Quintanilla", "Ines",
                                                                                         "1984-07-19")  # fmt: skip
    assert riverside.source == "hl7"
    assert PatientRecord.objects.get(local_id="L900").organization == lakeside
    person = Link.objects.get(record=riverside, state=LinkState.MATCH).person
    assert Link.objects.filter(record__local_id="L900", person=person, state=LinkState.MATCH).exists()
    assert not Link.objects.filter(record__local_id="R200", person=person).exists()
    assert AuditEvent.objects.filter(event_type="hl7-message").count() == 3


def test_a08_updates_and_a_repeated_control_id_is_applied_once(mllp, facility):
    first = adt("A01", "C1", pid("R100"))
    moved = adt("A08", "C2", pid("R100", street="77 Birch Ln", city="Gresham"))
    acks = send(mllp, first, moved, moved)
    assert [code(a) for a in acks] == ["AA", "AA", "AA"]
    record = PatientRecord.objects.get(local_id="R100")
    assert (record.city, record.version) == ("Gresham", 2)
    states = sorted(InboundMessage.objects.values_list("state", flat=True))
    assert states == [MessageState.DUPLICATE, MessageState.PROCESSED, MessageState.PROCESSED]


def test_a40_merges_at_the_source(mllp, facility):
    other = pid("R2", family="Reyes", given="Mari", born="19840917", street="9 Elm St", ssn="")
    send(mllp, adt("A04", "G1", pid("R1")), adt("A04", "G2", other))
    persons = {Link.objects.get(record__local_id=m, state=LinkState.MATCH).person_id for m in ("R1", "R2")}
    assert len(persons) == 2
    [ack] = send(mllp, adt("A40", "G3", pid("R1"), extra=f"MRG|R2^^^RIVERSIDE&{OID}&ISO^MR"))
    assert code(ack) == "AA"
    old = PatientRecord.objects.get(local_id="R2")
    assert old.active is False
    survivor = Link.objects.get(record__local_id="R1", state=LinkState.MATCH).person_id
    assert Link.objects.get(record=old, state=LinkState.MATCH).person_id == survivor


def test_bad_messages_get_the_right_acknowledgement_and_the_listener_keeps_serving(mllp, facility):
    missing_id = adt("A01", "B1", pid(""))
    bad_date = adt("A01", "B2", pid("R1", born="19841345"))
    stranger = adt("A01", "B3", pid("R1"), facility="NOWHERE")
    old_version = adt("A01", "B4", pid("R1"), version="2.1")
    acks = send(mllp, missing_id, bad_date, stranger, old_version)
    assert [code(a) for a in acks] == ["AE", "AE", "AR", "AR"]
    assert err_location(acks[0]) == "PID^1^3"
    assert err_location(acks[1]) == "PID^1^7"
    assert "not authenticated" in str(acks[2].segment("MSA")[3])
    # Data without MLLP framing, and a framed block that is not HL7: the connection is closed.
    assert send(mllp, b"hello, this is not MLLP\x1c\r") == [None]
    assert send(mllp, b"\x0bnot hl7 at all\x1c\r") == [None]
    # Everything was stored, and the listener still answers.
    assert InboundMessage.objects.count() == 5
    assert not PatientRecord.objects.exists()
    [ack] = send(mllp, adt("A01", "B5", pid("R1")))
    assert code(ack) == "AA"


def test_versions_line_ends_escapes_and_non_ascii_names(mllp, facility):
    message = adt("A01", "V1", pid("R7", family="O'Brien\\T\\Núñez", given="Zoë", middle=""), version="2.3")
    [ack] = send(mllp, message.replace("\r", "\n").encode("utf-8").join([b"\x0b", b"\x1c\r"]))
    assert code(ack) == "AA"
    assert str(ack.segment("MSH")[12]) == "2.3"
    record = PatientRecord.objects.get(local_id="R7")
    assert (record.family_name, record.given_name) == ("O'Brien&Núñez", "Zoë")


def test_a_message_whose_processing_dies_stays_in_the_inbox_and_a_replay_completes_it(mllp, facility, monkeypatch):
    # The task message is lost (the worker died before taking it): the message waits in the inbox.
    monkeypatch.setattr(services, "enqueue_processing", lambda organization_id: None)
    [ack] = send(mllp, adt("A01", "K1", pid("R1")))
    assert code(ack) == "AA"
    message = InboundMessage.objects.get(control_id="K1")
    assert message.state == MessageState.RECEIVED

    # A worker killed in the middle of applying it: its transaction never commits.
    def killed(message):
        raise SystemExit("worker killed")

    monkeypatch.setattr(services, "apply_message", killed)
    with pytest.raises(SystemExit):
        services.process_inbox(facility.pk)
    message.refresh_from_db()
    assert message.state == MessageState.RECEIVED
    assert not PatientRecord.objects.exists()

    monkeypatch.undo()
    call_command("replay_inbox", "--waiting")
    message.refresh_from_db()
    assert message.state == MessageState.PROCESSED
    assert PatientRecord.objects.filter(local_id="R1").exists()


def test_messages_received_together_are_stored_together_and_each_gets_its_own_ack(audit_rows_flushable, facility):
    good = adt("A04", "T1", pid("R1"))
    batch = [good, good, adt("A04", "T2", pid("")), adt("A04", "T3", pid("R3"), facility="NOWHERE"),
             adt("A03", "T4", pid("R1"))]  # fmt: skip
    here = services.Peer(host="127.0.0.1", port=5000)
    acks = services.receive_messages(
        [services.Framed(m.encode(), here) for m in batch] + [services.Framed(b"garbage", here)]
    )
    assert acks[-1] is None  # no MSH to answer: that connection is closed
    parsed = [hl7.parse(a.decode()) for a in acks[:-1]]
    assert [(code(a), str(a.segment("MSA")[2])) for a in parsed] == [
        ("AA", "T1"), ("AA", "T1"), ("AE", "T2"), ("AR", "T3"), ("AA", "T4")]  # fmt: skip
    states = list(InboundMessage.objects.order_by("pk").values_list("state", flat=True))
    assert states == [MessageState.PROCESSED, MessageState.DUPLICATE, MessageState.ERROR, MessageState.REJECTED,
                      MessageState.STORED, MessageState.REJECTED]  # fmt: skip
    assert AuditEvent.objects.filter(event_type="hl7-message").count() == 6
    assert PatientRecord.objects.get().local_id == "R1"


def test_many_connections_at_once_each_get_the_ack_of_their_own_messages(mllp, facility):
    async def one(connection: int) -> list[str]:
        reader, writer = await open_hl7_connection("127.0.0.1", mllp)
        answered = []
        for n in range(4):
            writer.writemessage(hl7.parse(adt("A04", f"K{connection}-{n}", pid(f"R{connection}-{n}"))))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 15)
            answered.append(f"{code(ack)} {ack.segment('MSA')[2]}")
        writer.close()
        return answered

    async def all_at_once() -> list[list[str]]:
        return await asyncio.gather(*(one(c) for c in range(8)))

    for connection, answered in enumerate(asyncio.run(all_at_once())):
        assert answered == [f"AA K{connection}-{n}" for n in range(4)]
    assert InboundMessage.objects.filter(state=MessageState.PROCESSED).count() == 32
    assert PatientRecord.objects.count() == 32


def test_a_member_is_read_again_after_the_cache_window(audit_rows_flushable, facility, settings):
    settings.HL7_MEMBER_CACHE_SECONDS = 60
    [ack] = services.receive_messages([services.Framed(adt("A04", "W1", pid("R1")).encode(), LOCAL)])
    assert code(hl7.parse(ack.decode())) == "AA"
    facility.active = False
    facility.save()
    [ack] = services.receive_messages([services.Framed(adt("A04", "W2", pid("R2")).encode(), LOCAL)])
    assert code(hl7.parse(ack.decode())) == "AA"  # still within the window
    settings.HL7_MEMBER_CACHE_SECONDS = 0
    [ack] = services.receive_messages([services.Framed(adt("A04", "W3", pid("R3")).encode(), LOCAL)])
    assert code(hl7.parse(ack.decode())) == "AR"


def test_a_message_that_breaks_its_batch_does_not_keep_the_others_from_being_stored(
    audit_rows_flushable, facility, monkeypatch
):
    real_check = messages.check_pid

    def check(parsed, organization):
        checked = real_check(parsed, organization)
        if checked.local_id == "BAD":
            raise RuntimeError("an unforeseen failure")
        return checked

    monkeypatch.setattr(messages, "check_pid", check)
    batch = [
        services.Framed(adt("A04", f"P{n}", pid(mrn)).encode(), LOCAL) for n, mrn in enumerate(["R1", "BAD", "R2"])
    ]
    first, broken, last = _receive(batch)
    assert isinstance(broken, RuntimeError)  # not ACKed: the sender sends it again
    assert [code(hl7.parse(a.decode())) for a in (first, last)] == ["AA", "AA"]
    assert sorted(InboundMessage.objects.values_list("control_id", flat=True)) == ["P0", "P2"]


def test_the_listener_replaces_a_database_connection_that_was_cut(mllp_listener, facility):
    if database.vendor != "postgresql":
        pytest.skip("cuts the listener's PostgreSQL sessions")
    assert code(send(mllp_listener.bound_port, adt("A04", "D1", pid("R1")))[0]) == "AA"
    barrier = threading.Barrier(mllp_listener.threads)

    def backend() -> int | None:  # run once on each database thread of the listener
        barrier.wait(timeout=10)
        return database.connection.info.backend_pid if database.connection else None

    jobs = [mllp_listener.executor.submit(backend) for _ in range(mllp_listener.threads)]
    sessions = [pid for pid in (job.result(15) for job in jobs) if pid]
    assert sessions
    with database.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sessions])
    acks = send(mllp_listener.bound_port, adt("A04", "D2", pid("R2")), adt("A04", "D3", pid("R3")))
    assert [code(ack) for ack in acks] == ["AA", "AA"]  # no message waits for the sender to send it again
    assert InboundMessage.objects.filter(control_id__in=["D2", "D3"], state=MessageState.PROCESSED).count() == 2


def test_applying_a_message_is_audited_against_the_patients_euid(mllp, facility):
    other = pid("R2", family="Reyes", given="Mari", born="19840917", street="9 Elm St", ssn="")
    send(mllp, adt("A04", "E1", pid("R1")), adt("A04", "E2", other))
    [ack] = send(mllp, adt("A40", "E3", pid("R1"), extra=f"MRG|R2^^^RIVERSIDE&{OID}&ISO^MR"))
    assert code(ack) == "AA"
    [ack] = send(mllp, adt("A08", "E4", pid("R9", born="19841345")))  # AE: refused, never applied
    assert code(ack) == "AE"

    def euid(mrn: str) -> str:
        return Link.objects.get(record__local_id=mrn, state=LinkState.MATCH).person.euid

    applied = AuditEvent.objects.filter(event_type="hl7-apply").order_by("sequence")
    assert [(e.detail["type"], e.resource_id, e.person_euid, e.organization_id) for e in applied] == [
        ("ADT^A04", str(PatientRecord.objects.get(local_id="R1").pk), applied[0].person_euid, facility.pk),
        ("ADT^A04", str(PatientRecord.objects.get(local_id="R2").pk), applied[1].person_euid, facility.pk),
        ("ADT^A40", str(PatientRecord.objects.get(local_id="R1").pk), euid("R1"), facility.pk),
    ]
    assert "" not in {applied[0].person_euid, applied[1].person_euid}
    assert applied[0].person_euid != applied[1].person_euid  # two persons until the merge
    assert euid("R2") == euid("R1")  # the merged patient's record now belongs to the surviving person
