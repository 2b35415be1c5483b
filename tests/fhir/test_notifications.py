"""Notifications through the real server: a member subscribes its webhook with a FHIR Subscription and
hears, once per event after dropping repeats, of documents registered elsewhere for its patients."""

import pytest
import requests
from fhir.resources.R4B.subscription import Subscription

from consent.services import record_consent
from hie.audit.services import SYSTEM
from hie.exchange.models import DeadLetter, Delivery, DeliveryStatus, EventKind, OutboxEvent
from hie.exchange.services import replay_dead_letter
from hie.fhir.patient import euid_system
from hie.fhir.subscription import signing_extension_url
from tests.fhir.conftest import patient
from tests.fhir.test_documents import document, submit


def register_patient(member, local_id: str) -> dict:
    response = requests.put(f"{member.base}/fhir/Patient", params={"identifier": f"{member.system}|{local_id}"},
                            json=patient(member.system, local_id), headers=member.headers(), timeout=10)  # fmt: skip
    assert response.status_code in (200, 201), response.text
    return response.json()


def subscribe(member, receiver, criteria: str = "DocumentReference") -> Subscription:
    body = {"resourceType": "Subscription", "status": "requested", "reason": "care coordination",
            "criteria": criteria, "channel": {"type": "rest-hook", "endpoint": receiver.url,
                                              "payload": "application/json"}}  # fmt: skip
    response = requests.post(f"{member.base}/fhir/Subscription", json=body, headers=member.headers(), timeout=10)
    assert response.status_code == 201, response.text
    subscription = Subscription.model_validate_json(response.content)
    receiver.secret = next(e.valueString for e in subscription.extension if e.url == signing_extension_url())
    return subscription


@pytest.fixture
def two_members(member, settings):
    settings.NOTIFY_TIMEOUT_SECONDS = 0.4
    settings.NOTIFY_MAX_ATTEMPTS = 3
    clinic, hospital = member("Clinic"), member("Hospital")
    register_patient(clinic, "C-1")
    register_patient(hospital, "H-1")
    return clinic, hospital


def test_a_document_registered_elsewhere_is_delivered_once_even_when_the_first_delivery_times_out(
    two_members, webhook_receiver
):
    clinic, hospital = two_members
    receiver = webhook_receiver(slow_first=True)
    subscribe(clinic, receiver)
    hospital_receiver = webhook_receiver()
    subscribe(hospital, hospital_receiver)
    assert submit(hospital, document(hospital, "H-1", "urn:uuid:note-1")).status_code == 200

    assert len(receiver.deliveries) == 2  # timed out once, sent again with the same event id
    assert len({d["id"] for d in receiver.deliveries}) == 1
    assert len(receiver.events) == 1  # the receiver saw the event once after dropping the repeat
    assert receiver.bad_signatures == 0
    (event,) = receiver.events.values()
    assert event["type"] == "document-registered"
    assert event["patient"]["identifiers"] == [f"{clinic.system}|C-1"]  # the clinic's own identifier
    assert event["document"].startswith("DocumentReference/")
    assert "Quintanilla" not in str(event)  # references and codes only
    delivery = Delivery.objects.get(subscription__organization=clinic.organization)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert hospital_receiver.deliveries == []  # the member that registered it is not told of its own act


def test_a_failing_webhook_ends_in_a_dead_letter_and_a_replay_delivers(two_members, webhook_receiver):
    clinic, hospital = two_members
    receiver = webhook_receiver(fail=True)
    subscribe(clinic, receiver)
    submit(hospital, document(hospital, "H-1", "urn:uuid:note-2"))
    letter = DeadLetter.objects.get(kind="notification", resolved=False)
    assert letter.attempts == 3
    assert len(receiver.deliveries) == 3
    receiver.fail = False
    replay_dead_letter(letter=letter, actor=SYSTEM)
    letter.refresh_from_db()
    assert letter.resolved
    assert Delivery.objects.get().status == DeliveryStatus.DELIVERED
    assert len(receiver.events) == 1


def test_no_notification_about_a_patient_the_member_may_not_see(two_members, webhook_receiver):
    clinic, hospital = two_members
    receiver = webhook_receiver()
    subscribe(clinic, receiver)
    euid = next(i["value"] for i in register_patient(clinic, "C-1")["identifier"] if i["system"] == euid_system())
    deny_the_clinic = {"type": "deny", "actors": [clinic.organization.pk]}
    record_consent(patient_system=euid_system(), patient_value=euid, policy_rule="OPTOUT",
                   provision=deny_the_clinic, source="verbal", actor=SYSTEM)  # fmt: skip
    submit(hospital, document(hospital, "H-1", "urn:uuid:note-3"))
    assert OutboxEvent.objects.filter(kind=EventKind.DOCUMENT_REGISTERED, dispatched=True).exists()
    assert receiver.deliveries == []


def test_subscriptions_are_listed_and_ended_by_their_member(member, webhook_receiver):
    clinic, other = member("Clinic"), member("Other")
    subscription = subscribe(clinic, webhook_receiver(), criteria="Patient")
    listed = requests.get(f"{clinic.base}/fhir/Subscription", headers=clinic.headers(), timeout=10).json()
    assert listed["total"] == 1
    assert "extension" not in listed["entry"][0]["resource"]  # the secret is shown once only
    url = f"{clinic.base}/fhir/Subscription/{subscription.id}"
    assert requests.delete(url, headers=other.headers(), timeout=10).status_code == 404
    assert requests.delete(url, headers=clinic.headers(), timeout=10).status_code == 204
    bad = {"resourceType": "Subscription", "status": "requested", "reason": "x", "criteria": "Observation",
           "channel": {"type": "rest-hook", "endpoint": "https://x.example/hook"}}  # fmt: skip
    assert requests.post(f"{clinic.base}/fhir/Subscription", json=bad, headers=clinic.headers(),
                         timeout=10).status_code == 400  # fmt: skip


def test_a_record_linked_at_another_member_is_notified(member, webhook_receiver):
    clinic, hospital = member("Clinic"), member("Hospital")
    register_patient(clinic, "C-1")
    receiver = webhook_receiver()
    subscribe(clinic, receiver, criteria="Patient")
    register_patient(hospital, "H-1")  # the same patient: linked automatically
    (event,) = receiver.events.values()
    assert event["type"] == "record-linked"
    assert event["organization"] == f"Organization/{hospital.organization.pk}"
    assert event["patient"]["identifiers"] == [f"{clinic.system}|C-1"]
