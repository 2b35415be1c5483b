"""Mapping between member organizations and FHIR Organization resources."""

from django.conf import settings
from fhir.resources.R4B.organization import Organization as FhirOrganization

from hie.orgs.models import Organization


def patient_identifier_system_extension() -> str:
    return f"{settings.HIE_CANONICAL_BASE}/StructureDefinition/patient-identifier-system"


def to_fhir(organization: Organization) -> FhirOrganization:
    resource = {
        "resourceType": "Organization",
        "id": str(organization.pk),
        "active": organization.active,
        "name": organization.name,
        # The namespaces this member assigns patient identifiers under: what PIXm targetSystem names.
        "extension": [
            {"url": patient_identifier_system_extension(), "valueUri": uri}
            for uri in organization.identifier_system_uris
        ],
    }
    if organization.hl7_facility:
        resource["identifier"] = [
            {"system": f"{settings.HIE_CANONICAL_BASE}/sid/hl7-facility", "value": organization.hl7_facility}
        ]
    if organization.fhir_endpoint:
        resource["telecom"] = [{"system": "url", "value": organization.fhir_endpoint}]
    return FhirOrganization.model_validate(resource)
