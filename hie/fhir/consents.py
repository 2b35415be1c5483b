"""FHIR Consent endpoints (IHE PCF ITI-108 style): record, read, vread, update and search."""

from datetime import date

from django.http import FileResponse, HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent as FhirConsent

from consent.access import check_collected_by, consent_for, visible_to
from consent.models import Consent, ConsentStatus, ConsentVersion
from consent.selectors import consents_under, identifiers_of_person
from consent.services import audit_consent_read, change_consent, open_break_glass, record_consent, withdraw_consent
from hie.audit.models import Action
from hie.audit.services import Actor
from hie.datesearch import date_matches, date_range
from hie.exceptions import PreconditionFailed, UnknownResource, ValidationFailed
from hie.fhir import consent as mapping
from hie.fhir.auth import METHOD_ACTIONS, fhir_view
from hie.fhir.patient import euid_system, parse_resource, parse_token
from hie.fhir.responses import fhir_response
from matching.selectors import identified_record, person_by_euid

READ, WRITE = "system/Consent.read", "system/Consent.write"
SEARCH_PARAMETERS = {"patient", "patient.identifier", "status", "actor", "date", "period", "_count"}


def _audit(request: HttpRequest, event_type: str, consent: Consent | None = None, *, person_euid: str = "",
           detail: dict | None = None) -> None:  # fmt: skip
    audit_consent_read(actor=Actor.from_request(request), event_type=event_type, consent=consent,
                       person_euid=person_euid, purpose=request.purpose_of_use, detail=detail)  # fmt: skip


def _answer(consent: Consent, status: int) -> HttpResponse:
    headers = {"ETag": f'W/"{consent.version}"'}
    if status == 201:
        headers["Location"] = f"/fhir/Consent/{consent.pk}/_history/{consent.version}"
    return fhir_response(mapping.consent_to_fhir(consent), status=status, headers=headers)


def _consent(request: HttpRequest, consent_id: str) -> Consent:
    """The consent, if the requesting member recorded it; any other is "not known" (consent/access.py)."""
    return consent_for(member=request.api_client.organization, consent_id=consent_id,
                       actor=Actor.from_request(request), action=METHOD_ACTIONS.get(request.method, Action.READ),
                       purpose=request.purpose_of_use)  # fmt: skip


@fhir_view(scope={"GET": READ, "POST": WRITE})
def consent_type(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        given = mapping.consent_from_fhir(parse_resource(request.body, FhirConsent, "the Consent"))
        consent = record_consent(
            patient_system=given.patient_system, patient_value=given.patient_value, policy_rule=given.policy_rule,
            provision=given.provision, source=given.source, status=given.status, attachment=given.attachment,
            date_recorded=given.date_recorded, member=request.api_client.organization,
            named_collectors=given.collectors, actor=Actor.from_request(request), purpose=request.purpose_of_use,
        )  # fmt: skip
        return _answer(consent, 201)
    return _search(request)


def _search(request: HttpRequest) -> HttpResponse:
    unknown = sorted(set(request.GET) - SEARCH_PARAMETERS)
    if unknown:
        raise ValidationFailed("unsupported search parameter(s): " + ", ".join(unknown))
    person = None
    if request.GET.get("patient.identifier"):
        system, value = parse_token(request.GET["patient.identifier"])
        if system == euid_system():
            person = person_by_euid(value)
        else:
            found = identified_record(system or "", value)
            person = person_by_euid(found.euid) if found and found.euid else None
    elif request.GET.get("patient"):
        person = person_by_euid(request.GET["patient"].removeprefix("Patient/"))
    else:
        raise ValidationFailed("search consents by patient or patient.identifier")
    consents = []
    if person is not None:
        # Only the member's own consents: another member's identifier finds an empty Bundle.
        consents = list(visible_to(request.api_client.organization, consents_under(identifiers_of_person(person))))
    if request.GET.get("status"):
        consents = [c for c in consents if c.status in request.GET["status"].split(",")]
    if request.GET.get("actor"):
        actor = request.GET["actor"].removeprefix("Organization/")
        organization = int(actor) if actor.isdecimal() else 0
        consents = [c for c in consents if organization in _actors(c.provision)]
    if request.GET.get("date"):
        term = date_range(request.GET["date"], "date")
        consents = [c for c in consents if date_matches(term, c.date_recorded.date())]
    if request.GET.get("period"):
        # Consent.provision.period: an open start or end reaches as far as dates go.
        term = date_range(request.GET["period"], "period")
        consents = [c for c in consents if date_matches(term, *_period_days(c.provision.get("period")))]
    _audit(request, "consent-search", person_euid=person.euid if person else "", detail={"total": len(consents)})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(consents),
              "link": [{"relation": "self", "url": request.build_absolute_uri()}],
              "entry": [{"fullUrl": request.build_absolute_uri(f"/fhir/Consent/{c.pk}"),
                         "resource": mapping.consent_to_fhir(c).model_dump(exclude_none=True),
                         "search": {"mode": "match"}} for c in consents]}  # fmt: skip
    return fhir_response(Bundle.model_validate(bundle))


def _period_days(period: dict | None) -> tuple[date, date]:
    period = period or {}
    start, end = parse_datetime(period.get("start") or ""), parse_datetime(period.get("end") or "")
    return (start.date() if start else date.min), (end.date() if end else date.max)


def _actors(provision: dict) -> set[int]:
    return set(provision.get("actors", [])) | {a for child in provision.get("provisions", []) for a in child["actors"]}


@fhir_view(scope={"GET": READ, "PUT": WRITE, "DELETE": WRITE})
def consent_instance(request: HttpRequest, consent_id: str) -> HttpResponse:
    """Read, update (a new version; withdraw with status inactive) or DELETE (withdraw: the registry
    keeps every consent and its history). Only the member that recorded the consent gets past _consent."""
    consent = _consent(request, consent_id)
    actor = Actor.from_request(request)
    if request.method == "GET":
        _audit(request, "consent-read", consent)
        return _answer(consent, 200)
    if request.method == "DELETE":
        consent = withdraw_consent(consent=consent, actor=actor, reason="withdrawn through the API (DELETE)",
                                   purpose=request.purpose_of_use)  # fmt: skip
        return _answer(consent, 200)
    expected = request.headers.get("If-Match", "").removeprefix("W/").strip('"')
    if expected and expected != str(consent.version):
        raise PreconditionFailed("the consent's current version is not the one the update was based on")
    given = mapping.consent_from_fhir(parse_resource(request.body, FhirConsent, "the Consent"))
    if (given.patient_system, given.patient_value) != (consent.patient_system, consent.patient_value):
        raise ValidationFailed("a consent's patient does not change; record a new consent")
    check_collected_by(request.api_client.organization, given.collectors)
    if given.status not in ConsentStatus.values:
        raise ValidationFailed("unknown consent status")
    consent = change_consent(consent=consent, actor=actor, reason="updated through the API",
                             provision=given.provision, status=given.status,
                             purpose=request.purpose_of_use)  # fmt: skip
    return _answer(consent, 200)


@fhir_view(scope={"GET": READ})
def consent_version(request: HttpRequest, consent_id: str, version: str) -> HttpResponse:
    consent = _consent(request, consent_id)
    number = int(version) if version.isdecimal() and len(version) <= 9 else 0
    snapshot = ConsentVersion.objects.filter(consent=consent, version=number).first()
    if snapshot is None:
        raise UnknownResource(f"Consent/{consent_id}/_history/{version} is not known")
    _audit(request, "consent-vread", consent, detail={"version": snapshot.version})
    return fhir_response(mapping.consent_to_fhir(consent, snapshot), headers={"ETag": f'W/"{snapshot.version}"'})


@fhir_view(scope={"GET": READ})
def consent_form(request: HttpRequest, consent_id: str) -> HttpResponse:
    consent = _consent(request, consent_id)
    if not consent.attachment:
        raise UnknownResource("this consent has no signed form")
    _audit(request, "consent-form", consent)
    return FileResponse(consent.attachment.open("rb"), as_attachment=True)


@fhir_view(scope={"POST": "system/Patient.read"}, reads={"POST"})
def break_glass(request: HttpRequest, resource_id: str) -> HttpResponse:
    """Patient/{EUID}/$break-glass: emergency access for the requester, for a time limit, reviewed later."""
    person = person_by_euid(resource_id)
    if person is None:
        raise UnknownResource(f"Patient/{resource_id} is not known")
    given = mapping.break_glass_request(request.body)
    grant = open_break_glass(person=person, requester=request.api_client.organization,
                             purpose=request.purpose_of_use, reason=given.reason, minutes=given.minutes,
                             actor=Actor.from_request(request))  # fmt: skip
    return fhir_response(mapping.break_glass_answer(grant))
