"""Mapping between FHIR R4 Consent (as IHE PCF shapes it) and the consent registry."""

from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from fhir.resources.R4B.consent import Consent as FhirConsent
from fhir.resources.R4B.parameters import Parameters

from consent.models import BreakGlass, Consent, ConsentSource, ConsentVersion
from hie.exceptions import Unprocessable, ValidationFailed
from hie.fhir.conventions import PURPOSE_SYSTEM
from hie.fhir.patient import euid_system, parse_resource, parse_token

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
CATEGORY = {"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}
ACTOR_ROLE = {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}


def source_extension() -> str:
    return f"{settings.HIE_CANONICAL_BASE}/StructureDefinition/consent-source"


def _label_system(code: str) -> str:
    if code in ("U", "L", "M", "N", "R", "V"):
        return "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    return ACT_CODE


def _organization_id(reference: str | None, where: str) -> int:
    value = (reference or "").removeprefix("Organization/")
    if not value.isdecimal():
        raise Unprocessable(f"{where} must reference Organization/{{id}}")
    return int(value)


def _provision_from_fhir(provision: object, where: str, nested: bool) -> dict:
    if provision.type not in ("permit", "deny"):
        raise Unprocessable(f"{where}.type must be permit or deny")
    result = {
        "type": provision.type,
        "actors": [_organization_id(a.reference.reference, f"{where}.actor") for a in provision.actor or []],
        "purposes": [p.code for p in provision.purpose or []],
        "labels": [label.code for label in provision.securityLabel or []],
    }
    if provision.period is not None:
        result["period"] = {"start": _iso(provision.period.start), "end": _iso(provision.period.end)}
    if provision.dataPeriod is not None:
        result["data_period"] = {"start": _iso(provision.dataPeriod.start), "end": _iso(provision.dataPeriod.end)}
    children = provision.provision or []
    if nested and children:
        raise Unprocessable(f"{where}: only one level of nested provisions is supported")
    if not nested:
        result["provisions"] = [
            _provision_from_fhir(child, f"{where}.provision[{n}]", True) for n, child in enumerate(children)
        ]
    return result


def _iso(value: object) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class ConsentInput:
    patient_system: str
    patient_value: str
    status: str
    policy_rule: str
    provision: dict
    source: str
    attachment: ContentFile | None
    date_recorded: object
    collectors: tuple[int, ...]  # Consent.organization: who says it collected the consent


def consent_from_fhir(resource: FhirConsent) -> ConsentInput:
    """What a Consent resource asks the registry to record (raises Unprocessable naming the part)."""
    scope = {c.code for c in resource.scope.coding or []} if resource.scope else set()
    if "patient-privacy" not in scope:
        raise Unprocessable("Consent.scope must be patient-privacy")
    identifier = resource.patient.identifier if resource.patient else None
    if identifier is not None and identifier.system and identifier.value:
        patient = (identifier.system, identifier.value)
    else:
        reference = resource.patient.reference if resource.patient else ""
        if reference and reference.startswith("Patient?identifier="):
            patient = parse_token(reference.removeprefix("Patient?identifier="))
        elif reference and reference.startswith("Patient/E"):
            patient = (euid_system(), reference.removeprefix("Patient/"))
        else:
            raise Unprocessable("Consent.patient must name the patient by identifier or Patient/{EUID}")
    rules = [c.code for c in (resource.policyRule.coding if resource.policyRule else []) or [] if c.system == ACT_CODE]
    if len(rules) != 1:
        raise Unprocessable("Consent.policyRule must hold one v3-ActCode (OPTIN, OPTOUT, OPTINR, OPTOUTE)")
    if resource.provision is None:
        raise Unprocessable("Consent.provision is required")
    attachment, source = None, ConsentSource.PORTAL
    extension = next((e for e in resource.extension or [] if e.url == source_extension()), None)
    if extension is not None:
        source = extension.valueCode
    if resource.sourceAttachment is not None and resource.sourceAttachment.data:
        content = resource.sourceAttachment.data  # fhir.resources has decoded the base64 already
        suffix = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}.get(
            resource.sourceAttachment.contentType or "", ".bin"
        )
        attachment, source = ContentFile(content, name=f"consent-form{suffix}"), ConsentSource.FORM
    return ConsentInput(
        patient_system=patient[0] or "",
        patient_value=patient[1],
        status=resource.status,
        policy_rule=rules[0],
        provision=_provision_from_fhir(resource.provision, "Consent.provision", False),
        source=source,
        attachment=attachment,
        date_recorded=resource.dateTime,
        collectors=tuple(_organization_id(o.reference, "Consent.organization") for o in resource.organization or []),
    )


def _provision_to_fhir(provision: dict) -> dict:
    result = {"type": provision["type"]}
    if provision.get("period"):
        result["period"] = {k: v for k, v in provision["period"].items() if v}
    if provision.get("actors"):
        result["actor"] = [{"role": {"coding": [ACTOR_ROLE]}, "reference": {"reference": f"Organization/{a}"}}
                           for a in provision["actors"]]  # fmt: skip
    if provision.get("purposes"):
        result["purpose"] = [{"system": PURPOSE_SYSTEM, "code": p} for p in provision["purposes"]]
    if provision.get("labels"):
        result["securityLabel"] = [{"system": _label_system(code), "code": code} for code in provision["labels"]]
    if provision.get("data_period"):
        result["dataPeriod"] = {k: v for k, v in provision["data_period"].items() if v}
    if provision.get("provisions"):
        result["provision"] = [_provision_to_fhir(child) for child in provision["provisions"]]
    return result


def consent_to_fhir(consent: Consent, version: ConsentVersion | None = None) -> FhirConsent:
    status = version.status if version else consent.status
    provision = version.provision if version else consent.provision
    resource = {
        "resourceType": "Consent",
        "id": str(consent.pk),
        "meta": {
            "versionId": str(version.version if version else consent.version),
            "lastUpdated": (version.changed_at if version else consent.updated_at).isoformat(),
        },
        "status": status,
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [CATEGORY]}],
        "patient": {"identifier": {"system": consent.patient_system, "value": consent.patient_value}},
        "dateTime": consent.date_recorded.isoformat(),
        "policyRule": {"coding": [{"system": ACT_CODE, "code": consent.policy_rule}]},
        "provision": _provision_to_fhir(provision),
        "extension": [{"url": source_extension(), "valueCode": consent.source}],
    }
    if consent.collected_by_id:
        resource["organization"] = [{"reference": f"Organization/{consent.collected_by_id}"}]
    if consent.attachment:
        resource["sourceAttachment"] = {"url": f"/fhir/Consent/{consent.pk}/form", "title": "signed consent form"}
    return FhirConsent.model_validate(resource)


@dataclass(frozen=True)
class BreakGlassRequest:
    reason: str
    minutes: int


def break_glass_request(body: bytes) -> BreakGlassRequest:
    """The Parameters of $break-glass: reason (string) and minutes (integer)."""
    parameters = parse_resource(body, Parameters, "the Parameters")
    given = {p.name: p for p in parameters.parameter or []}
    reason = given["reason"].valueString if "reason" in given else None
    minutes = given["minutes"].valueInteger if "minutes" in given else None
    if not reason or not isinstance(minutes, int):
        raise ValidationFailed("$break-glass needs a reason (valueString) and minutes (valueInteger)")
    return BreakGlassRequest(reason=reason, minutes=minutes)


def break_glass_answer(grant: BreakGlass) -> Parameters:
    return Parameters.model_validate({"resourceType": "Parameters", "parameter": [
        {"name": "grant", "valueString": str(grant.pk)},
        {"name": "expires", "valueInstant": grant.expires_at.isoformat()},
    ]})  # fmt: skip
