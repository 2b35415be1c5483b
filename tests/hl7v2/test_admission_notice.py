"""An admission (ADT A01) at one member reaches, over MLLP and the outbox, the webhook of another
member that holds the patient and subscribed to admissions."""

from datetime import date

from hie.exchange.models import Delivery, DeliveryStatus
from hie.exchange.notifications import create_subscription
from matching.services import match_record
from tests.hl7v2.conftest import adt, send
from tests.hl7v2.test_mllp import code, pid
from tests.matching.factories import organization, register


def test_an_admission_elsewhere_is_delivered_to_the_patients_other_member(mllp, facility, webhook_receiver):
    clinic = organization("Lakeside Clinic")
    record = register(clinic, local_id="LC-7", given_name="Marisol", family_name="Quintanilla", sex="female",
                      birth_date=date(1984, 7, 19), ssn="512-44-3187", phones=["503-555-0142"]).record  # fmt: skip
    match_record(record.pk)
    receiver = webhook_receiver()
    subscription = create_subscription(organization=clinic, endpoint=receiver.url, events=["admission"])
    receiver.secret = subscription.secret
    other_receiver = webhook_receiver()
    riverside_subscription = create_subscription(organization=facility, endpoint=other_receiver.url,
                                                 events=["admission"])  # fmt: skip
    other_receiver.secret = riverside_subscription.secret

    (ack,) = send(mllp, adt("A01", "ADM1", pid("R777")))
    assert code(ack) == "AA"
    (event,) = receiver.events.values()
    assert event["type"] == "admission"
    assert event["event"] == "ADT^A01"
    assert event["source"] == f"Organization/{facility.pk}"
    assert event["patient"]["identifiers"] == [f"{record.identifier_system}|LC-7"]
    assert receiver.bad_signatures == 0
    assert Delivery.objects.get(subscription=subscription).status == DeliveryStatus.DELIVERED
    assert other_receiver.deliveries == []  # the admitting member is not told of its own admission
    send(mllp, adt("A08", "UPD1", pid("R777")))
    assert len(receiver.events) == 1  # an update is not an admission
