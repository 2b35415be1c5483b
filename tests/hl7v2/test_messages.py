"""Reading PID fields into a registration, and writing ACKs, without a socket."""

import hl7
import pytest

from hie.hl7v2 import messages
from hie.orgs.services import create_organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    return create_organization(name="Lakeside", identifier_systems=["urn:oid:2.16.840.1.113883.3.7002.1"],
                               hl7_facility="LAKESIDE")  # fmt: skip


def parse(pid: str) -> hl7.Message:
    return hl7.parse(f"MSH|^~\\&|A|LAKESIDE|HIE|HIE|2026||ADT^A08|X1|P|2.4\rPID|1|{pid}\r")


def test_pid_fields_map_to_the_registration(member):
    message = parse(
        "|X9^^^OTHER^MR~L-77^^^LAKESIDE^MR~512443187^^^SSA^SS||Brandt^Heike^Marie^^^^L~Vogel^^^^^^M"
        "||19700301|F|||12 Lake Shore Dr^Unit 4^Lakeside^MI^49116^USA^H~PO Box 9^^Lakeside^MI^49116^USA^M"
        "||^PRN^PH^^^269^5550117~^NET^Internet^heike@example.org|^WPN^PH^^^269^5550999"
    )
    patient = messages.patient_from_pid(message, member)
    assert (patient.identifier_system, patient.local_id) == ("urn:oid:2.16.840.1.113883.3.7002.1", "L-77")
    d = patient.demographics
    assert (d.family_name, d.given_name, d.middle_name, d.previous_family_names) == ("Brandt", "Heike", "Marie",
                                                                                     ("Vogel",))  # fmt: skip
    assert d.ssn == "512443187"
    assert d.phones == ("2695550117", "2695550999")
    assert d.email == "heike@example.org"
    assert (d.address_line, d.city, d.postal_code) == ("12 Lake Shore Dr Unit 4", "Lakeside", "49116")
    assert str(d.birth_date) == "1970-03-01"


def test_problems_name_the_field(member):
    with pytest.raises(messages.MessageProblem) as no_id:
        messages.patient_from_pid(parse("|X9^^^OTHER&9.9.9&ISO^MR||Brandt^Heike"), member)
    assert (no_id.value.ack_code, no_id.value.location) == ("AE", "PID^1^3")
    with pytest.raises(messages.MessageProblem) as bad_sex:
        messages.patient_from_pid(parse("|L-1^^^LAKESIDE^MR||Brandt^Heike||19700301|Q"), member)
    assert bad_sex.value.location == "PID^1^8"


def test_ack_of_a_refusal_carries_msa_and_err_in_the_senders_version():
    head = messages.Header("EHR", "LAKESIDE", "HIE", "HIE", "ADT^A01", "A01", "C-1", "P", "2.3")
    problem = messages.MessageProblem("AE", "101", "PID-3 missing", "PID^1^3")
    ack = hl7.parse(messages.ack(head, "AE", ack_id="A1", problem=problem).decode())
    assert str(ack.segment("MSH")[12]) == "2.3"
    assert [str(ack.segment("MSA")[i]) for i in (1, 2)] == ["AE", "C-1"]
    assert str(ack.segment("ERR")[1]).startswith("PID^1^3^101")
