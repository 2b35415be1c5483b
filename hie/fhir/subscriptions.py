"""FHIR Subscription endpoints: members subscribe their webhooks to events about their patients."""

from django.http import HttpRequest, HttpResponse
from fhir.resources.R4B.bundle import Bundle

from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.exceptions import UnknownResource
from hie.exchange.models import Subscription
from hie.exchange.notifications import create_subscription
from hie.fhir import subscription as mapping
from hie.fhir.auth import fhir_view
from hie.fhir.responses import fhir_response

SCOPE = "system/Patient.read"


def _audit(request: HttpRequest, action: Action, event_type: str, subscription_id: object = "") -> None:
    record_event(actor=Actor.from_request(request), action=action, event_type=event_type,
                 resource_type="Subscription", resource_id=str(subscription_id))  # fmt: skip


def _own(request: HttpRequest, subscription_id: str) -> Subscription:
    subscription = Subscription.objects.filter(
        pk=int(subscription_id) if subscription_id.isdecimal() else 0, organization=request.api_client.organization
    ).first()
    if subscription is None:
        raise UnknownResource(f"Subscription/{subscription_id} is not known")
    return subscription


@fhir_view(scope={"POST": SCOPE, "GET": SCOPE}, reads=set())  # the member's own settings: no patient data
def subscription_type(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        given = mapping.subscription_request(request.body)
        subscription = create_subscription(organization=request.api_client.organization, endpoint=given.endpoint,
                                           events=given.events)  # fmt: skip
        _audit(request, Action.CREATE, "subscription-create", subscription.pk)
        return fhir_response(mapping.subscription_to_fhir(subscription, with_secret=True), status=201,
                             headers={"Location": f"/fhir/Subscription/{subscription.pk}"})  # fmt: skip
    own = Subscription.objects.filter(organization=request.api_client.organization, active=True).order_by("pk")
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": own.count(),
              "entry": [{"resource": mapping.subscription_to_fhir(s).model_dump(mode="json", exclude_none=True)}
                        for s in own]}  # fmt: skip
    return fhir_response(Bundle.model_validate(bundle))


@fhir_view(scope={"GET": SCOPE, "DELETE": SCOPE}, reads=set())
def subscription_instance(request: HttpRequest, subscription_id: str) -> HttpResponse:
    subscription = _own(request, subscription_id)
    if request.method == "DELETE":
        subscription.active = False
        subscription.save(update_fields=["active"])
        _audit(request, Action.DELETE, "subscription-delete", subscription.pk)
        return HttpResponse(status=204)
    return fhir_response(mapping.subscription_to_fhir(subscription))
