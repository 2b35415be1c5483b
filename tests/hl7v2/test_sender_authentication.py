"""An HL7 sender is the member its client certificate or address proves, not what MSH-4 claims.

Attacks go through the real MLLP socket: plain TCP, and TLS with throwaway certificates.
"""

import ssl

import pytest
from django.core.management import call_command

from hie.hl7v2.listener import tls_context
from hie.hl7v2.models import InboundMessage, MessageState
from hie.orgs.models import HL7Certificate, HL7SourceNetwork, Organization
from hie.orgs.services import add_hl7_certificate
from matching.models import Link, PatientRecord
from tests.hl7v2.certificates import Authority
from tests.hl7v2.conftest import adt, hl7_member, send
from tests.hl7v2.test_mllp import code, pid

LAKESIDE_OID = "2.16.840.1.113883.3.7002.1"
LAKESIDE = f"LAKESIDE&{LAKESIDE_OID}&ISO"


@pytest.fixture
def authority(tmp_path):
    return Authority(tmp_path, "hie-member-ca")


@pytest.fixture
def tls_listener(start_listener, authority):
    """A listener serving TLS that verifies client certificates against the members' CA."""
    server = authority.issue("mllp.hie.test", server=True)
    context = tls_context(certificate=str(server.certificate), key=str(server.key), client_ca=str(authority.path))
    return start_listener(tls=context)


def client_tls(authority: Authority, issued=None) -> ssl.SSLContext:
    """An interface engine's TLS: trusts the listener's CA, presents `issued` if given."""
    context = ssl.create_default_context(cafile=str(authority.path))
    if issued is not None:
        context.load_cert_chain(str(issued.certificate), str(issued.key))
    return context


@pytest.fixture
def lakeside(authority):
    """A member that sends over TLS with its certificate, and from no address."""
    member = hl7_member("Lakeside", LAKESIDE_OID, "LAKESIDE", address=None)
    engine = authority.issue("lakeside-engine")
    add_hl7_certificate(organization=member, certificate=engine.certificate.read_text())
    return member, engine


def lakeside_patients(port: int, tls: ssl.SSLContext) -> None:
    acks = send(port, adt("A04", "L1", pid("L1", authority=LAKESIDE), facility="LAKESIDE"),
                adt("A04", "L2", pid("L2", family="Reyes", given="Mari", born="19840917", street="9 Elm St", ssn="",
                                     authority=LAKESIDE), facility="LAKESIDE"), tls=tls)  # fmt: skip
    assert [code(a) for a in acks] == ["AA", "AA"]


def test_a_plain_socket_cannot_write_merge_or_split_for_another_member(mllp, tls_listener, authority, facility,
                                                                       lakeside):  # fmt: skip
    _, engine = lakeside
    lakeside_patients(tls_listener.bound_port, client_tls(authority, engine))
    before = sorted(PatientRecord.objects.values_list("local_id", "family_name", "birth_date", "active", "version"))
    links_before = sorted(Link.objects.values_list("record_id", "person_id", "state"))

    # From 127.0.0.1, which is allowed for Riverside only, claiming to be Lakeside.
    rewrite = adt("A08", "X1", pid("L1", family="Forged", born="19500101", authority=LAKESIDE), facility="LAKESIDE")
    merge = adt("A40", "X2", pid("L1", authority=LAKESIDE), facility="LAKESIDE",
                extra=f"MRG|L2^^^{LAKESIDE}^MR")  # fmt: skip
    split = adt("A37", "X3", pid("L1", authority=LAKESIDE), facility="LAKESIDE",
                extra=f"PID|2||L2^^^{LAKESIDE}^MR||Reyes^Mari")  # fmt: skip
    unknown = adt("A08", "X4", pid("R1"), facility="NOWHERE")
    acks = send(mllp, rewrite, merge, split, unknown)
    assert [code(a) for a in acks] == ["AR"] * 4
    # The refusal says nothing about whether LAKESIDE is a member: a stranger's facility reads the same.
    reasons = {str(a.segment("MSA")[3]) for a in acks}
    assert reasons == {"MSH-4: the sender is not authenticated as this sending facility"}

    assert sorted(PatientRecord.objects.values_list("local_id", "family_name", "birth_date", "active",
                                                    "version")) == before  # fmt: skip
    assert sorted(Link.objects.values_list("record_id", "person_id", "state")) == links_before
    # Each was stored as received, as no member's message, and refused.
    refused = InboundMessage.objects.filter(control_id__startswith="X")
    assert refused.count() == 4
    assert set(refused.values_list("state", "ack_code", "organization")) == {(MessageState.REJECTED, "AR", None)}
    assert set(refused.values_list("peer", flat=True)) != {""}


def test_a_member_with_its_certificate_is_accepted_and_applied(tls_listener, authority, lakeside):
    member, engine = lakeside
    lakeside_patients(tls_listener.bound_port, client_tls(authority, engine))
    [ack] = send(tls_listener.bound_port, adt("A08", "L3", pid("L1", family="Ortega", authority=LAKESIDE),
                                               facility="LAKESIDE"), tls=client_tls(authority, engine))  # fmt: skip
    assert code(ack) == "AA"
    record = PatientRecord.objects.get(local_id="L1")
    assert (record.organization, record.family_name, record.version) == (member, "Ortega", 2)


def test_a_certificate_speaks_only_for_its_own_member(tls_listener, authority, facility, lakeside):
    _, engine = lakeside
    # Lakeside's engine, with a CA-signed certificate, claiming to be Riverside (whose address is
    # 127.0.0.1, but over TLS the certificate says who is sending; the address alone still counts).
    riverside_engine = authority.issue("riverside-engine")
    facility.hl7_source_networks.all().delete()
    add_hl7_certificate(organization=facility, certificate=riverside_engine.sha256)
    [ack] = send(tls_listener.bound_port, adt("A04", "Y1", pid("R1")), tls=client_tls(authority, engine))
    assert code(ack) == "AR"
    # A certificate the CA signed that no member registered, and none at all.
    stranger = authority.issue("unregistered-engine")
    [ack] = send(tls_listener.bound_port, adt("A04", "Y2", pid("R1")), tls=client_tls(authority, stranger))
    assert code(ack) == "AR"
    [ack] = send(tls_listener.bound_port, adt("A04", "Y3", pid("R1")), tls=client_tls(authority))
    assert code(ack) == "AR"
    assert not PatientRecord.objects.exists()
    [ack] = send(tls_listener.bound_port, adt("A04", "Y4", pid("R1")), tls=client_tls(authority, riverside_engine))
    assert code(ack) == "AA"
    assert PatientRecord.objects.get().organization == facility


def no_ack_through_handshake(port: int, message: str, tls: ssl.SSLContext) -> bool:
    """True if the listener refused the TLS handshake (under TLS 1.3 the client learns of it on its
    first read: the connection closes without an ACK)."""
    try:
        return send(port, message, tls=tls) == [None]
    except (ssl.SSLError, ConnectionError):
        return True


def test_a_certificate_from_another_authority_fails_the_handshake(tls_listener, authority, tmp_path, lakeside):
    (tmp_path / "forger").mkdir()
    forger = Authority(tmp_path / "forger", "forged-ca").issue("lakeside-engine")
    message = adt("A04", "Z1", pid("L1", authority=LAKESIDE), facility="LAKESIDE")
    assert no_ack_through_handshake(tls_listener.bound_port, message, client_tls(authority, forger))
    assert not InboundMessage.objects.exists()


def test_the_listener_can_require_a_client_certificate(start_listener, authority):
    server = authority.issue("mllp.hie.test", server=True)
    context = tls_context(certificate=str(server.certificate), key=str(server.key), client_ca=str(authority.path),
                          require_client_certificate=True)  # fmt: skip
    listener = start_listener(tls=context)
    assert no_ack_through_handshake(listener.bound_port, adt("A04", "Z2", pid("R1")), client_tls(authority))
    assert not InboundMessage.objects.exists()
    with pytest.raises(ValueError, match="CA"):
        tls_context(certificate=str(server.certificate), key=str(server.key), require_client_certificate=True)


def test_commands_register_a_members_certificate_and_addresses(db, authority, capsys):
    engine = authority.issue("metro-engine")
    call_command("create_member", "Metro Lab", "--identifier-system", "urn:oid:2.16.840.1.113883.3.7003.1",
                 "--facility", "METROLAB", "--hl7-certificate", str(engine.certificate),
                 "--hl7-allow-address", "10.20.0.0/24")  # fmt: skip
    member = Organization.objects.get(name="Metro Lab")
    assert list(member.hl7_certificates.values_list("sha256", flat=True)) == [engine.sha256]
    assert member.proves_hl7_sender(address="10.20.0.77")
    assert not member.proves_hl7_sender(address="10.20.1.1")
    assert member.proves_hl7_sender(address="::ffff:10.20.0.5")
    assert member.proves_hl7_sender(address="192.0.2.1", certificate_sha256=engine.sha256)

    # openssl's way of writing a fingerprint is understood too.
    rotated = authority.issue("metro-engine-2026")
    openssl_style = "sha256 Fingerprint=" + ":".join(rotated.sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    call_command("hl7_sender", "Metro Lab", "--hl7-certificate", openssl_style,
                 "--remove-certificate", str(engine.certificate),
                 "--disallow-address", "10.20.0.0/24", "--hl7-allow-address", "127.0.0.1")  # fmt: skip
    assert list(HL7Certificate.objects.values_list("sha256", flat=True)) == [rotated.sha256]
    assert list(HL7SourceNetwork.objects.values_list("network", flat=True)) == ["127.0.0.1/32"]
    assert "127.0.0.1/32" in capsys.readouterr().out
