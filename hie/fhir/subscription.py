"""Mapping of webhook subscriptions to and from FHIR R4 Subscription (rest-hook channel)."""

from dataclasses import dataclass

from django.conf import settings
from fhir.resources.R4B.subscription import Subscription as FhirSubscription

from hie.exceptions import ValidationFailed
from hie.exchange.models import EventKind, Subscription
from hie.fhir.patient import parse_resource


def signing_extension_url() -> str:
    return f"{settings.HIE_CANONICAL_BASE}/StructureDefinition/signing-secret"


# Subscription.criteria (the resource type; a query after it is not evaluated) -> the events it covers
CRITERIA = {
    "DocumentReference": [EventKind.DOCUMENT_REGISTERED],
    "Patient": [EventKind.RECORD_LINKED, EventKind.PERSONS_MERGED],
    "Encounter": [EventKind.ADMISSION],
}


@dataclass(frozen=True)
class SubscriptionRequest:
    endpoint: str
    events: list[str]


def subscription_request(body: bytes) -> SubscriptionRequest:
    given = parse_resource(body, FhirSubscription, "the Subscription")
    resource_type = (given.criteria or "").split("?", 1)[0]
    if resource_type not in CRITERIA:
        raise ValidationFailed("criteria must be DocumentReference, Patient or Encounter")
    channel = given.channel
    if channel.type != "rest-hook" or not (channel.endpoint or "").startswith(("https://", "http://")):
        raise ValidationFailed("channel must be a rest-hook with an http(s) endpoint")
    return SubscriptionRequest(channel.endpoint, [e.value for e in CRITERIA[resource_type]])


def subscription_to_fhir(subscription: Subscription, *, with_secret: bool = False) -> FhirSubscription:
    criteria = next(name for name, kinds in CRITERIA.items() if {k.value for k in kinds} == set(subscription.events))
    resource = {
        "resourceType": "Subscription",
        "id": str(subscription.pk),
        "status": "active" if subscription.active else "off",
        "reason": "events about the member's patients: " + ", ".join(subscription.events),
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": subscription.endpoint, "payload": "application/json"},
    }
    if with_secret:
        # Shown once: the member checks each delivery's X-HIE-Signature (HMAC-SHA256 of the body) with it.
        resource["extension"] = [{"url": signing_extension_url(), "valueString": subscription.secret}]
    return FhirSubscription.model_validate(resource)
