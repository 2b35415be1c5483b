"""FHIR endpoints. Views parse, call one selector or service, and render through a mapping module."""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from fhir.resources.R4B.bundle import Bundle

from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.exceptions import UnknownResource
from hie.fhir import organization as organization_mapping
from hie.fhir.auth import fhir_view
from hie.fhir.responses import fhir_response
from hie.orgs.selectors import active_organizations, organization_by_id


@require_GET
@fhir_view(scope="system/Organization.read", reads=set())  # the directory holds no PHI: no purpose needed
def organization_search(request: HttpRequest) -> HttpResponse:
    organizations = active_organizations()
    record_event(
        actor=Actor.from_request(request),
        action=Action.READ,
        event_type="organization-search",
        resource_type="Organization",
        detail={"count": len(organizations)},
    )
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(organizations),
            "link": [{"relation": "self", "url": request.build_absolute_uri()}],
            "entry": [
                {
                    "fullUrl": request.build_absolute_uri(f"/fhir/Organization/{o.pk}"),
                    "resource": organization_mapping.to_fhir(o).model_dump(exclude_none=True),
                    "search": {"mode": "match"},
                }
                for o in organizations
            ],
        }
    )
    return fhir_response(bundle)


@require_GET
@fhir_view(scope="system/Organization.read", reads=set())  # the directory holds no PHI: no purpose needed
def organization_read(request: HttpRequest, organization_id: str) -> HttpResponse:
    organization = organization_by_id(int(organization_id)) if organization_id.isdecimal() else None
    if organization is None:
        raise UnknownResource(f"Organization/{organization_id} is not known")
    record_event(
        actor=Actor.from_request(request),
        action=Action.READ,
        event_type="organization-read",
        resource_type="Organization",
        resource_id=organization_id,
    )
    return fhir_response(organization_mapping.to_fhir(organization))
