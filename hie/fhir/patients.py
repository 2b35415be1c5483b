"""Patient identity endpoints: the identity feed (PIXm ITI-104), PIXm query (ITI-83), PDQm search
(ITI-78) and $match (ITI-119). Views parse, call one service or selector, and render through
hie/fhir/patient.py."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient as FhirPatient

from consent.decide import visible_persons
from consent.services import audit_decision, audit_decisions
from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.exceptions import Forbidden, UnknownDomain, UnknownResource, UnknownTargetDomain, ValidationFailed
from hie.fhir import patient as mapping
from hie.fhir import patient_search
from hie.fhir.auth import fhir_view
from hie.fhir.responses import fhir_response, json_response
from hie.orgs.selectors import known_identifier_systems
from matching.models import PatientRecord, Person, Source
from matching.normalize import normalise
from matching.score import grade
from matching.selectors import (
    confirmed_person_of,
    cross_references,
    identified_record,
    match_demographics,
    person_by_euid,
    search_persons,
)
from matching.services import check_namespace, receive_registration, retire_record

READ = "system/Patient.read"
WRITE = "system/Patient.write"


def _audit(
    request: HttpRequest,
    action: Action,
    event_type: str,
    *,
    resource_id: str = "",
    person: Person | None = None,
    detail: dict | None = None,
) -> None:
    record_event(
        actor=Actor.from_request(request),
        action=action,
        event_type=event_type,
        resource_type="Patient",
        resource_id=resource_id,
        person_euid=person.euid if person else "",
        purpose_of_use=request.purpose_of_use,
        detail=detail or {},
    )


def _identifier_param(query: QueryDict, name: str) -> tuple[str, str]:
    values = query.getlist(name)
    if len(values) != 1:
        raise ValidationFailed(f"exactly one {name}=system|value is required")
    system, value = mapping.parse_token(values[0])
    if not system or not value:
        raise ValidationFailed(f"{name} must be system|value")
    return system, value


def _if_match(request: HttpRequest) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    version = raw.strip().removeprefix("W/").strip('"')
    if not version.isdecimal():
        raise ValidationFailed('If-Match must be an ETag such as W/"3"')
    return int(version)


def _record_response(record: PatientRecord, person: Person | None, status: int) -> HttpResponse:
    headers = {
        "ETag": f'W/"{record.version}"',
        "Last-Modified": record.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    if status == 201:
        headers["Location"] = f"/fhir/Patient/{record.pk}/_history/{record.version}"
    return fhir_response(mapping.record_to_fhir(record, person), status=status, headers=headers)


# --- the identity feed ----------------------------------------------------------------------


def _feed(request: HttpRequest, wanted: tuple[str, str] | None, *, must_be_new: bool,
          patient: FhirPatient | None = None) -> HttpResponse:  # fmt: skip
    organization = request.api_client.organization
    if wanted is not None:
        check_namespace(organization, wanted[0])
    patient = patient or mapping.parse_patient(request.body)
    registration = mapping.registration_of(patient, organization.identifier_system_uris, wanted)
    result = receive_registration(
        organization=organization,
        identifier_system=registration.identifier_system,
        local_id=registration.local_id,
        demographics=registration.demographics,
        source=Source.FHIR,
        active=registration.active,
        replaced_by=registration.replaced_by,
        expected_version=_if_match(request),
        must_be_new=must_be_new,
        actor=Actor.from_request(request),
    )
    record = result.record
    # Matched at once (register_and_match): the event names the person the record now is, so the
    # registration is in that patient's accounting of disclosures.
    person = confirmed_person_of(record)
    detail = {"version": record.version, "changed": result.changed, "merged": registration.replaced_by is not None}
    action = Action.CREATE if result.created else Action.UPDATE
    _audit(request, action, "patient-feed", resource_id=str(record.pk), person=person, detail=detail)
    return _record_response(record, person, 201 if result.created else 200)


def _conditional_delete(request: HttpRequest) -> HttpResponse:
    organization = request.api_client.organization
    system, value = _identifier_param(request.GET, "identifier")
    check_namespace(organization, system)
    record = PatientRecord.objects.filter(organization=organization, identifier_system=system, local_id=value).first()
    if record is None:
        raise UnknownResource("no patient is registered under that identifier")
    person = confirmed_person_of(record)  # before the withdrawal unlinks it
    retire_record(record=record, actor=Actor.from_request(request))
    _audit(request, Action.DELETE, "patient-withdraw", resource_id=str(record.pk), person=person)
    return HttpResponse(status=204)


# --- PDQm search and reads ------------------------------------------------------------------


def _search(request: HttpRequest) -> HttpResponse:
    query = patient_search.parse(request.GET)
    found = search_persons(query.criteria, limit=settings.FHIR_SEARCH_MAX_MATCHES + 1)
    if len(found) > settings.FHIR_SEARCH_MAX_MATCHES:
        raise ValidationFailed(
            f"more than {settings.FHIR_SEARCH_MAX_MATCHES} patients match; add search parameters to narrow the search"
        )
    # Consent is applied before paging, so totals and links never reveal a hidden person.
    visible = _consented(request, found)
    total = len(visible)
    persons = visible[query.offset : query.offset + query.count]
    _audit(request, Action.READ, "patient-search", detail={"total": total, "returned": len(persons),
           "hidden": len(found) - total, "parameters": sorted(k for k in request.GET)})  # fmt: skip
    links = [{"relation": "self", "url": request.build_absolute_uri()}]
    if query.offset + query.count < total:
        links.append({"relation": "next", "url": _page_url(request, query.offset + query.count)})
    if query.offset > 0:
        links.append({"relation": "previous", "url": _page_url(request, max(0, query.offset - query.count))})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [_person_entry(request, person, {"mode": "match"}) for person in persons],
    }
    return fhir_response(Bundle.model_validate(bundle))


def _may_see(request: HttpRequest, person: Person) -> bool:
    return bool(_consented(request, [person]))


def _consented(request: HttpRequest, persons: list[Person]) -> list[Person]:
    """The persons the requesting member may see for the request's purpose (consent.decide)."""
    decisions = visible_persons(persons, request.api_client.organization, request.purpose_of_use)
    actor = Actor.from_request(request)
    by_policy = []
    for person in persons:
        decision = decisions[person.pk]
        if decision.consents or decision.break_glass:
            audit_decision(actor=actor, person=person, decision=decision, purpose=request.purpose_of_use)
        else:
            by_policy.append(({"patient": person.euid}, decision))
    if by_policy:
        # The decisions the implicit policy made, all of this request's in one AuthZ-Consent event.
        audit_decisions(actor=actor, person=persons[0] if len(persons) == 1 else None, decisions=by_policy,
                        purpose=request.purpose_of_use)  # fmt: skip
    return [person for person in persons if decisions[person.pk].permitted]


def _page_url(request: HttpRequest, offset: int) -> str:
    query = request.GET.copy()
    query["_offset"] = str(offset)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _person_entry(request: HttpRequest, person: Person, search: dict) -> dict:
    return {
        "fullUrl": request.build_absolute_uri(f"/fhir/Patient/{person.euid}"),
        "resource": mapping.person_to_fhir(person).model_dump(exclude_none=True),
        "search": search,
    }


@fhir_view(scope={"GET": READ, "PUT": WRITE, "POST": WRITE, "DELETE": WRITE})
def patient_type(request: HttpRequest) -> HttpResponse:
    """/fhir/Patient: PDQm search (GET), conditional update (PUT), create (POST), conditional delete."""
    if request.method == "GET":
        return _search(request)
    if request.method == "PUT":
        return _feed(request, _identifier_param(request.GET, "identifier"), must_be_new=False)
    if request.method == "POST":
        return _feed(request, None, must_be_new=True)
    return _conditional_delete(request)


@fhir_view(scope={"GET": READ, "PUT": WRITE})
def patient_instance(request: HttpRequest, resource_id: str) -> HttpResponse:
    """/fhir/Patient/{id}: a member's record (numeric id) or a person (EUID)."""
    if resource_id.isdecimal():
        record = PatientRecord.objects.filter(pk=int(resource_id)).first()
        if record is None:
            raise UnknownResource(f"Patient/{resource_id} is not known")
        if request.method == "PUT":
            if record.organization_id != request.api_client.organization_id:
                raise Forbidden("a member may only update its own patients")
            sent = mapping.parse_patient(request.body)
            body_id = sent.id
            if body_id is not None and body_id != resource_id:
                raise ValidationFailed("the Patient's id must be the id in the URL")
            return _feed(request, (record.identifier_system, record.local_id), must_be_new=False, patient=sent)
        person = confirmed_person_of(record)
        if record.organization_id != request.api_client.organization_id and (
            person is None or not _may_see(request, person)
        ):
            raise UnknownResource(f"Patient/{resource_id} is not known")
        _audit(request, Action.READ, "patient-read", resource_id=resource_id, person=person)
        return _record_response(record, person, 200)
    if request.method == "PUT":
        raise Forbidden("a person's golden record is derived by the node and cannot be written")
    person = Person.objects.filter(euid=resource_id).first()
    if person is None:
        raise UnknownResource(f"Patient/{resource_id} is not known")
    survivor = person_by_euid(resource_id) if person.merged_into_id else None
    if not _may_see(request, survivor or person):
        raise UnknownResource(f"Patient/{resource_id} is not known")
    _audit(request, Action.READ, "patient-read", resource_id=resource_id, person=person)
    return fhir_response(mapping.person_to_fhir(person, survivor))


# --- PIXm -----------------------------------------------------------------------------------


@fhir_view(scope={"GET": READ})
def pix_query(request: HttpRequest) -> HttpResponse:
    """PIXm ITI-83: every identifier of the person behind sourceIdentifier."""
    system, value = _identifier_param(request.GET, "sourceIdentifier")
    target_systems = [s for raw in request.GET.getlist("targetSystem") for s in raw.split(",") if s]
    euid_system = mapping.euid_system()
    source = identified_record(system, value) if system != euid_system else None
    # Only systems not vouched for already (the EUID's, the found record's) are looked up.
    unvouched = {s for s in (system, *target_systems) if s != euid_system and not (source and s == system)}
    known = known_identifier_systems(sorted(unvouched)) if unvouched else set()
    if system != euid_system and source is None and system not in known:
        raise UnknownDomain("sourceIdentifier Assigning Authority not found")
    if any(target != euid_system and target not in known and target != system for target in target_systems):
        raise UnknownTargetDomain("targetSystem not found")
    source_record_id, person_id, euid = None, None, None
    if system == euid_system:
        person = person_by_euid(value)
        if person is None:
            raise UnknownResource("sourceIdentifier Patient Identifier not found")
        person_id, euid = person.pk, person.euid
    else:
        # A record withdrawn by its member is unknown here, unless it was merged into another one.
        if source is None or (not source.active and source.person_id is None):
            raise UnknownResource("sourceIdentifier Patient Identifier not found")
        source_record_id, person_id, euid = source.record_id, source.person_id, source.euid
    if person_id is not None and not _may_see(request, Person.from_db(None, ["id", "euid"], [person_id, euid])):
        if system not in request.api_client.organization.identifier_system_uris:
            raise UnknownResource("sourceIdentifier Patient Identifier not found")
        person_id = None  # the member's own patient, whose records elsewhere it may not see
    parameters = []
    if person_id is not None:  # a record still waiting for matching or review has no cross-references yet
        references = [r for r in cross_references(person_id) if r.record_id != source_record_id]
        targets = [(r.identifier_system, r.local_id, f"Patient/{r.record_id}") for r in references]
        if system != euid_system:
            targets.append((euid_system, euid, f"Patient/{euid}"))
        for target_system, target_value, reference in targets:
            if target_systems and target_system not in target_systems:
                continue
            parameters += [
                {"name": "targetIdentifier", "valueIdentifier": {"system": target_system, "value": target_value}},
                {"name": "targetId", "valueReference": {"reference": reference}},
            ]
    record_event(
        actor=Actor.from_request(request),
        action=Action.EXECUTE,
        event_type="pix-query",
        resource_type="Patient",
        person_euid=euid or "",
        purpose_of_use=request.purpose_of_use,
        detail={"identifiers": len(parameters) // 2},
    )
    # Built as JSON directly: the shape is fixed and this is the hottest read of the API.
    return json_response({"resourceType": "Parameters", **({"parameter": parameters} if parameters else {})})


# --- $match ---------------------------------------------------------------------------------


@fhir_view(scope={"POST": READ}, reads={"POST"}, read_only={"POST"})
def patient_match(request: HttpRequest) -> HttpResponse:
    """PDQm ITI-119 / Patient/$match: persons ranked by the same model that matches on write."""
    match = mapping.parse_match_request(request.body)
    demographics = mapping.demographics_of(match.patient)
    ranked = []
    for scored in match_demographics(normalise(**demographics.as_fields())):
        match_grade = grade(scored.probability)
        if match_grade == "certainly-not" or (match.only_certain and match_grade != "certain"):
            continue
        ranked.append((scored, match_grade))
    persons = Person.objects.in_bulk([scored.person_id for scored, _ in ranked])
    visible = {person.pk for person in _consented(request, list(persons.values()))}
    ranked = [(scored, match_grade) for scored, match_grade in ranked if scored.person_id in visible][: match.count]
    entries = [
        _person_entry(
            request,
            persons[scored.person_id],
            {
                "mode": "match",
                "score": round(scored.probability, 4),
                "extension": [{"url": mapping.MATCH_GRADE_EXTENSION, "valueCode": match_grade}],
            },
        )
        for scored, match_grade in ranked
    ]
    _audit(
        request, Action.EXECUTE, "patient-match", detail={"returned": len(entries), "only_certain": match.only_certain}
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": request.build_absolute_uri()}],
        "entry": entries,
    }
    return fhir_response(Bundle.model_validate(bundle))
