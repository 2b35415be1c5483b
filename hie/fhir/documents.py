"""MHD endpoints: Provide Document Bundle (ITI-65), Find Lists (ITI-66), Find Document References
(ITI-67) and Retrieve Document (ITI-68), every read through consent.decide()."""

import uuid

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, QueryDict
from fhir.resources.R4B.bundle import Bundle

from consent.services import audit_decisions
from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.datesearch import date_range
from hie.exceptions import UnknownResource, ValidationFailed
from hie.exchange.selectors import gather_job_of
from hie.exchange.services import start_gather
from hie.fhir import document as mapping
from hie.fhir import task as task_mapping
from hie.fhir.auth import fhir_view
from hie.fhir.conventions import purpose_of_use
from hie.fhir.patient import euid_system, parse_token
from hie.fhir.patient_search import DEFAULT_COUNT, non_negative
from hie.fhir.responses import fhir_response, json_response
from hie.locator.custodian import fetch_content
from hie.locator.selectors import (
    DocumentCriteria,
    document_entry,
    documents_of_person,
    entries_of,
    submission_set,
    submission_sets_of_person,
    visible_documents,
)
from hie.locator.services import register_documents
from matching.models import Person
from matching.selectors import confirmed_person_of, identified_record, person_by_euid

READ, WRITE = "system/DocumentReference.read", "system/DocumentReference.write"
TOKEN_PARAMETERS = {
    "type": "types", "category": "categories", "facility": "facility", "event": "events", "setting": "setting",
    "format": "formats", "security-label": "security_labels", "identifier": "identifiers", "related": "related",
}  # fmt: skip
DATE_PARAMETERS = {"date": "date", "period": "period", "creation": "creation"}
STRING_PARAMETERS = {"author.given": "author_given", "author.family": "author_family"}
SEARCH_PARAMETERS = {"patient", "patient.identifier", "status", *TOKEN_PARAMETERS, *DATE_PARAMETERS,
                     *STRING_PARAMETERS, "_count", "_offset", "_format"}  # fmt: skip
STATUSES = {"current", "superseded", "entered-in-error"}


def _audit(request: HttpRequest, action: Action, event_type: str, *, resource_id: object = "", person_euid: str = "",
           detail: dict | None = None) -> None:  # fmt: skip
    record_event(actor=Actor.from_request(request), action=action, event_type=event_type,
                 resource_type="DocumentReference", resource_id=str(resource_id), person_euid=person_euid,
                 purpose_of_use=request.purpose_of_use, detail=detail or {})  # fmt: skip


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@fhir_view(scope={"POST": WRITE})
def fhir_system(request: HttpRequest) -> HttpResponse:
    """POST /fhir with a transaction Bundle: MHD Provide Document Bundle (ITI-65)."""
    submission = mapping.parse_transaction(request.body, fhir_base=request.build_absolute_uri("/fhir"))
    if any(document.patient_id for document in submission.documents):
        # Resolving another member's record as the subject is a read of that link: consent decides.
        request.purpose_of_use = purpose_of_use(request, request.access_grant)
    registration = register_documents(
        custodian=request.api_client.organization,
        documents=submission.documents,
        submission_set=submission.submission_set,
        actor=Actor.from_request(request),
        submission_list=submission.submission_list,
        purpose=request.purpose_of_use,
    )
    entries = []
    for kind, document in zip(submission.entry_kinds, submission.entry_documents, strict=True):
        if kind == "List":
            created, location = registration.submission_set_created, f"List/{registration.submission_set.pk}"
        else:
            item = registration.documents[document]
            created = item.created
            # A Binary's content is served as the document's (ITI-68 Binary/{id}).
            location = (f"DocumentReference/{item.entry.pk}/_history/{item.entry.version}"
                        if kind == "DocumentReference" else f"Binary/{item.entry.pk}")  # fmt: skip
        entries.append({"response": {"status": "201 Created" if created else "200 OK", "location": location}})
    # MHD ITI-65: one response entry per request entry, in the same order.
    bundle = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    return fhir_response(Bundle.model_validate(bundle))


# --- ITI-67 ----------------------------------------------------------------------------------


def _criteria(query: QueryDict) -> DocumentCriteria:
    unknown = sorted(set(query) - SEARCH_PARAMETERS)
    if unknown:
        raise ValidationFailed("unsupported search parameter(s): " + ", ".join(unknown))
    if not query.get("status"):
        raise ValidationFailed("status is required (MHD ITI-67), e.g. status=current")
    statuses = [s for value in query.getlist("status") for s in value.split(",")]
    if not set(statuses) <= STATUSES:
        raise ValidationFailed("status must be current, superseded or entered-in-error")
    criteria = DocumentCriteria(statuses=statuses)
    for name, attribute in TOKEN_PARAMETERS.items():
        getattr(criteria, attribute).extend(v for value in query.getlist(name) for v in value.split(","))
    for name, attribute in STRING_PARAMETERS.items():
        getattr(criteria, attribute).extend(v for value in query.getlist(name) for v in value.split(","))
    for name, attribute in DATE_PARAMETERS.items():
        getattr(criteria, attribute).extend(date_range(value, name) for value in query.getlist(name))
    return criteria


def _patient(query: QueryDict) -> Person | None:
    """The person the query names: a member's identifier or the EUID (patient.identifier), or Patient/<EUID>."""
    if query.get("patient.identifier"):
        system, value = parse_token(query["patient.identifier"])
        if not system:
            raise ValidationFailed("patient.identifier must be system|value")
        if system == euid_system():
            return person_by_euid(value)
        found = identified_record(system, value)
        return person_by_euid(found.euid) if found and found.euid else None
    if query.get("patient"):
        return person_by_euid(query["patient"].rsplit("/", 1)[-1])
    raise ValidationFailed("search documents by patient or patient.identifier (MHD ITI-67)")


@fhir_view(scope={"GET": READ})
def document_reference_type(request: HttpRequest) -> HttpResponse:
    return _search(request, request.GET)


@fhir_view(scope={"POST": READ}, reads={"POST"}, read_only={"POST"})
def document_reference_search(request: HttpRequest) -> HttpResponse:
    """POST DocumentReference/_search with the parameters as a form."""
    return _search(request, request.POST)


def _search(request: HttpRequest, query: QueryDict) -> HttpResponse:
    criteria = _criteria(query)
    count = max(1, min(non_negative(query, "_count", DEFAULT_COUNT), settings.FHIR_MAX_PAGE_SIZE))
    offset = non_negative(query, "_offset", 0)
    person = _patient(query)
    found = documents_of_person(person, criteria) if person is not None else []
    # Consent is applied before paging: totals and links never reveal a hidden document.
    visible, decisions = visible_documents(person, found, request.api_client.organization,
                                           request.purpose_of_use) if found else ([], [])  # fmt: skip
    if decisions:
        audit_decisions(actor=Actor.from_request(request), person=person, decisions=decisions,
                        purpose=request.purpose_of_use)  # fmt: skip
    page = visible[offset : offset + count]
    _audit(request, Action.READ, "document-search", person_euid=person.euid if person else "",
           detail={"total": len(visible), "returned": len(page), "hidden": len(found) - len(visible)})  # fmt: skip
    base = _base(request)
    links = [{"relation": "self", "url": _page_url(request, query, offset)}]
    if offset + count < len(visible):
        links.append({"relation": "next", "url": _page_url(request, query, offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": _page_url(request, query, max(0, offset - count))})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(visible),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/fhir/DocumentReference/{entry.pk}",
                "resource": mapping.entry_resource(entry, base),
                "search": {"mode": "match"},
            }
            for entry in page
        ],
    }
    # Built as plain JSON on this hot path (ITI-67); tests validate its shape with fhir.resources.
    return json_response(bundle)


def _page_url(request: HttpRequest, query: QueryDict, offset: int) -> str:
    paged = query.copy()
    paged["_offset"] = str(offset)
    return request.build_absolute_uri(f"/fhir/DocumentReference?{paged.urlencode()}")


def _visible_entry(request: HttpRequest, entry_id: str) -> tuple[object, Person]:
    """The entry, if the requester may see it; a hidden document answers 404, as an unknown one does."""
    entry = document_entry(entry_id)
    person = confirmed_person_of(entry.record) if entry is not None else None
    if entry is None or person is None:
        raise UnknownResource(f"DocumentReference/{entry_id} is not known")
    visible, decisions = visible_documents(person, [entry], request.api_client.organization, request.purpose_of_use)
    audit_decisions(actor=Actor.from_request(request), person=person, decisions=decisions,
                    purpose=request.purpose_of_use)  # fmt: skip
    if not visible:
        raise UnknownResource(f"DocumentReference/{entry_id} is not known")
    return entry, person


@fhir_view(scope={"GET": READ})
def document_reference_instance(request: HttpRequest, entry_id: str) -> HttpResponse:
    entry, person = _visible_entry(request, entry_id)
    _audit(request, Action.READ, "document-read", resource_id=entry.pk, person_euid=person.euid)
    return fhir_response(mapping.entry_to_fhir(entry, _base(request)), headers={"ETag": f'W/"{entry.version}"'})


# --- ITI-68 ----------------------------------------------------------------------------------


@fhir_view(scope={"GET": READ})
def document_content(request: HttpRequest, entry_id: str) -> HttpResponse:
    """GET Binary/<id>: the document's content, from the node's storage or fetched from its custodian."""
    entry, person = _visible_entry(request, entry_id)
    detail = {"custodian": entry.custodian_id, "by_reference": entry.by_reference}
    if entry.by_reference and entry.prefetched:
        _audit(request, Action.READ, "document-retrieve", resource_id=entry.pk, person_euid=person.euid, detail=detail)
        response = FileResponse(entry.prefetched.open("rb"), content_type=entry.content_type)
    elif entry.by_reference:
        content = fetch_content(entry)
        _audit(request, Action.READ, "document-retrieve", resource_id=entry.pk, person_euid=person.euid, detail=detail)
        response = HttpResponse(content, content_type=entry.content_type)
    else:
        _audit(request, Action.READ, "document-retrieve", resource_id=entry.pk, person_euid=person.euid, detail=detail)
        response = FileResponse(entry.stored.open("rb"), content_type=entry.content_type)
    if entry.sha1:
        response["ETag"] = f'"{entry.sha1}"'
    response["Cache-Control"] = "no-store"
    return response


# --- gather jobs -----------------------------------------------------------------------------


@fhir_view(scope={"POST": READ}, reads={"POST"})
def gather_documents(request: HttpRequest) -> HttpResponse:
    """Patient/$gather-documents: ask every custodian of the person for its current documents.

    Answers 202 with the job as a Task; a repeated request with the same Idempotency-Key answers
    the same job."""
    given = task_mapping.gather_request(request.body)
    if given.patient_system is None or given.patient_system == euid_system():
        person = person_by_euid(given.patient_value)
    else:
        found = identified_record(given.patient_system, given.patient_value)
        person = person_by_euid(found.euid) if found and found.euid else None
    if person is None:
        raise UnknownResource("the patient is not known")
    key = request.headers.get("Idempotency-Key", "").strip()[:100] or uuid.uuid4().hex
    job, created = start_gather(requester=request.api_client.organization, person=person,
                                purpose=request.purpose_of_use, idempotency_key=key, prefetch=given.prefetch,
                                deadline_seconds=given.deadline_seconds, actor=Actor.from_request(request))  # fmt: skip
    job.refresh_from_db()
    location = f"/fhir/Task/{job.pk}"
    return fhir_response(task_mapping.job_to_fhir(job), status=202 if created else 200,
                         headers={"Content-Location": location, "Location": location})  # fmt: skip


@fhir_view(scope={"GET": READ})
def task_instance(request: HttpRequest, task_id: str) -> HttpResponse:
    """A gather job's status and per-custodian progress; only the member that asked may see it."""
    job = gather_job_of(task_id, request.api_client.organization)
    if job is None:
        raise UnknownResource(f"Task/{task_id} is not known")
    _audit(request, Action.READ, "gather-status", resource_id=job.pk, person_euid=job.person.euid)
    return fhir_response(task_mapping.job_to_fhir(job))


# --- ITI-66 ----------------------------------------------------------------------------------

LIST_PARAMETERS = {"patient", "patient.identifier", "code", "status", "identifier", "_count", "_offset", "_format"}


def _visible_list(request: HttpRequest, submission: object, person: Person) -> list[int]:
    """The ids of the List's documents the requester may see (consent per custodian and label)."""
    visible, decisions = visible_documents(person, entries_of(submission), request.api_client.organization,
                                           request.purpose_of_use)  # fmt: skip
    if decisions:
        audit_decisions(actor=Actor.from_request(request), person=person, decisions=decisions,
                        purpose=request.purpose_of_use)  # fmt: skip
    return [entry.pk for entry in visible]


@fhir_view(scope={"GET": READ})
def list_instance(request: HttpRequest, list_id: str) -> HttpResponse:
    """GET List/{id}: a SubmissionSet, with the documents the requester may see; 404 if it may see none."""
    submission = submission_set(list_id)
    person = confirmed_person_of(submission.record) if submission is not None else None
    visible = _visible_list(request, submission, person) if person is not None else []
    if not visible:
        raise UnknownResource(f"List/{list_id} is not known")
    _audit(request, Action.READ, "list-read", resource_id=submission.pk, person_euid=person.euid)
    return json_response(mapping.submission_set_resource(submission, visible))


@fhir_view(scope={"GET": READ})
def list_type(request: HttpRequest) -> HttpResponse:
    """GET List?patient=…: MHD ITI-66 Find Lists, SubmissionSets only (code=submissionset)."""
    query = request.GET
    unknown = sorted(set(query) - LIST_PARAMETERS)
    if unknown:
        raise ValidationFailed("unsupported search parameter(s): " + ", ".join(unknown))
    codes = [c for value in query.getlist("code") for c in value.split(",")]
    statuses = [s for value in query.getlist("status") for s in value.split(",")]
    count = max(1, min(non_negative(query, "_count", DEFAULT_COUNT), settings.FHIR_MAX_PAGE_SIZE))
    offset = non_negative(query, "_offset", 0)
    person = _patient(query)
    wanted = (not codes or any(c.rsplit("|", 1)[-1] == "submissionset" for c in codes)) and (
        not statuses or "current" in statuses
    )
    identifiers = [i for value in query.getlist("identifier") for i in value.split(",")]
    found = submission_sets_of_person(person, identifiers=identifiers) if person is not None and wanted else []
    shown = [(s, ids) for s in found if (ids := _visible_list(request, s, person))]
    page = shown[offset : offset + count]
    _audit(request, Action.READ, "list-search", person_euid=person.euid if person else "",
           detail={"total": len(shown), "returned": len(page)})  # fmt: skip
    base = _base(request)
    links = [{"relation": "self", "url": request.build_absolute_uri()}]
    if offset + count < len(shown):
        paged = query.copy()
        paged["_offset"] = str(offset + count)
        links.append({"relation": "next", "url": request.build_absolute_uri(f"/fhir/List?{paged.urlencode()}")})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(shown),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/fhir/List/{s.pk}",
                "resource": mapping.submission_set_resource(s, ids),
                "search": {"mode": "match"},
            }
            for s, ids in page
        ],
    }
    return json_response(bundle)
