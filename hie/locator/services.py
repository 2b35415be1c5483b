"""Registering documents in the locator (MHD ITI-65): all of a submission, or nothing."""

import hashlib
import uuid
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.db import transaction

from consent.decide import decide
from consent.services import audit_decision
from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.exceptions import Conflict, Forbidden, Unprocessable, ValidationFailed
from hie.exchange.models import EventKind
from hie.exchange.notifications import emit
from hie.locator.models import DocumentEntry, DocumentStatus, SubmissionSet
from hie.orgs.models import Organization
from matching.models import LinkState, PatientRecord
from matching.selectors import confirmed_person_of, person_by_euid


@dataclass
class Registered:
    entry: DocumentEntry
    created: bool  # False: the same document was registered before (the submission is repeated)


@dataclass
class Registration:
    documents: list[Registered]  # in the submission's order
    submission_set: SubmissionSet | None = None
    submission_set_created: bool = False


def _digest(data: bytes) -> tuple[str, str]:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()


def _record(custodian: Organization, document: object, *, purpose: str, actor: Actor) -> PatientRecord:
    """The submitter's own record of the document's patient, named by an identifier of the
    submitter's, or as Patient/<id> (its own record, another member's record of the same person,
    or the person's EUID)."""
    if document.patient_id:
        record = _referenced_record(custodian, document.patient_id, purpose=purpose, actor=actor)
        if record is None:
            raise Unprocessable(f"{document.where}: the patient is not registered with the node; register it first")
        return record
    if document.patient_system not in custodian.identifier_system_uris:
        raise Forbidden(f"{document.where}: the patient must be given by an identifier of the submitter's own")
    record = PatientRecord.objects.filter(
        organization=custodian, identifier_system=document.patient_system, local_id=document.patient_value, active=True
    ).first()
    if record is None:
        raise Unprocessable(f"{document.where}: the patient is not registered with the node; register it first")
    return record


def _referenced_record(custodian: Organization, patient_id: str, *, purpose: str, actor: Actor) -> PatientRecord | None:
    """The custodian's active record confirmed as the person Patient/<patient_id> names; None when
    there is none, or when the id is another member's record that consent hides from the
    custodian (a refusal tells no more than an unknown patient: that record's link to the
    custodian's own is what consent protects)."""
    if patient_id.isdecimal():
        named = PatientRecord.objects.filter(pk=int(patient_id)).first()
        if named is None or named.organization_id == custodian.pk:
            return named if named is not None and named.active else None
        person = confirmed_person_of(named)
        if person is None:
            return None
        decision = decide(person, custodian, purpose)
        audit_decision(actor=actor, person=person, decision=decision, purpose=purpose)
        if not decision.permitted:
            return None
    else:
        person = person_by_euid(patient_id)
        if person is None:
            return None
    return (
        PatientRecord.objects.filter(organization=custodian, active=True, links__person=person,
                                     links__state=LinkState.MATCH)
        .order_by("pk")
        .first()
    )  # fmt: skip


def _replaced(custodian: Organization, document: object) -> list[DocumentEntry]:
    found = []
    for kind, value in document.replaces:
        if kind == "id":
            entry = DocumentEntry.objects.filter(pk=int(value) if value.isdecimal() else 0, custodian=custodian).first()
        else:
            system, _, master = value.partition("|")
            entry = DocumentEntry.objects.filter(custodian=custodian, master_system=system, master_value=master).first()
        if entry is None:
            raise Unprocessable(
                f"{document.where}: relatesTo names a document of the submitter's that is not registered"
            )
        found.append(entry)
    return found


def _same(entry: DocumentEntry, document: object, sha1: str) -> bool:
    return entry.sha1 == sha1 and entry.url == document.url


@transaction.atomic
def register_documents(
    *,
    custodian: Organization,
    documents: list,
    submission_set: str,
    actor: Actor,
    submission_list: object | None = None,
    purpose: str = "",
) -> Registration:
    """Register every document of a submission, and its SubmissionSet List if it has one; a
    document (or List) already registered under the same identifier with the same content is
    returned as it is (a repeated submission). `purpose` is the purpose of use under which a
    subject given as another member's record is resolved (consent decides)."""
    plans = []
    for document in documents:
        record = _record(custodian, document, purpose=purpose, actor=actor)
        if document.data is not None:
            sha1, sha256 = _digest(document.data)
            if document.sha1 and document.sha1 != sha1:
                raise ValidationFailed(f"{document.where}: content.attachment.hash does not match the content")
            if document.size is not None and document.size != len(document.data):
                raise ValidationFailed(f"{document.where}: content.attachment.size does not match the content")
            size = len(document.data)
        else:
            # The node fetches by-reference content with its own credentials: only from the member's
            # registered endpoint, never from an address a submission makes up.
            endpoint = custodian.fhir_endpoint.rstrip("/")
            if not endpoint or not document.url.startswith(f"{endpoint}/"):
                raise Unprocessable(f"{document.where}: a document registered by reference must be served from "
                                    "the member's registered FHIR endpoint")  # fmt: skip
            sha1, sha256, size = document.sha1, "", document.size
        # Locks the custodian's entry of this identifier, if any: two submissions of one document serialise.
        existing = (
            DocumentEntry.objects.select_for_update()
            .filter(custodian=custodian, master_system=document.master_system, master_value=document.master_value)
            .first()
        )
        if existing is not None and not _same(existing, document, sha1):
            raise Conflict(f"{document.where}: this masterIdentifier is registered already for other content")
        plans.append((document, record, sha1, sha256, size, existing, _replaced(custodian, document)))

    registered = []
    for document, record, sha1, sha256, size, existing, replaced in plans:
        if existing is not None:
            registered.append(Registered(existing, created=False))
            continue
        entry = DocumentEntry(
            custodian=custodian, record=record, master_system=document.master_system,
            master_value=document.master_value, submission_set=submission_set, type_code=document.type_code,
            categories=document.categories, date=document.date, period_start=document.period_start,
            period_end=document.period_end, creation=document.creation, author_given=document.author_given,
            author_family=document.author_family, facility=document.facility, events=document.events,
            setting=document.setting, format=document.format, security_labels=document.security_labels,
            related=document.related, content_type=document.content_type, size=size, sha1=sha1, sha256=sha256,
            url=document.url, title=document.title[:255], resource=document.resource,
        )  # fmt: skip
        if document.data is not None:
            # Content is written only after every document passed its checks; a failure after this
            # point rolls the rows back and leaves at most an unreferenced file.
            entry.stored.save(f"{uuid.uuid4().hex}", ContentFile(document.data), save=False)
        entry.save()
        for old in replaced:
            old.status, old.version = DocumentStatus.SUPERSEDED, old.version + 1
            old.save(update_fields=["status", "version", "updated_at"])
            entry.replaces = old
        if replaced:
            entry.save(update_fields=["replaces"])
        reported = {"document": f"DocumentReference/{entry.pk}", "custodian": f"Organization/{custodian.pk}"}
        emit(EventKind.DOCUMENT_REGISTERED, record=record, source=custodian, detail=reported)
        registered.append(Registered(entry, created=True))
    registration = Registration(registered)
    if submission_list is not None:
        registration.submission_set, registration.submission_set_created = _register_list(
            custodian, submission_list, registered, [plan[1] for plan in plans]
        )
    listed_pk = registration.submission_set.pk if registration.submission_set else None
    record_event(actor=actor, action=Action.CREATE, event_type="document-register", resource_type="DocumentReference",
                 detail={"created": [r.entry.pk for r in registered if r.created],
                         "repeated": [r.entry.pk for r in registered if not r.created],
                         "submission_set": listed_pk})  # fmt: skip
    return registration


def _register_list(
    custodian: Organization, listed: object, registered: list[Registered], records: list[PatientRecord]
) -> tuple[SubmissionSet, bool]:
    """Store the SubmissionSet List (MHD ITI-65): its entries point at the stored documents."""
    entries = [registered[i].entry for i in listed.documents]
    patients = {records[i].pk for i in listed.documents}
    if len(patients) != 1:
        raise Unprocessable("the documents of one SubmissionSet are all of the same patient (MHD)")
    # Locks the custodian's List of this identifier, if any: two submissions of one List serialise.
    existing = (
        SubmissionSet.objects.select_for_update()
        .filter(custodian=custodian, identifier_system=listed.identifier_system,
                identifier_value=listed.identifier_value)
        .first()
    )  # fmt: skip
    if existing is not None:
        if {e.pk for e in existing.entries.all()} != {e.pk for e in entries}:
            raise Conflict("this SubmissionSet identifier is registered already for other documents")
        return existing, False
    items = zip(listed.resource["entry"], entries, strict=True)
    pointed = [{**item, "item": {"reference": f"DocumentReference/{entry.pk}"}} for item, entry in items]
    resource = {**listed.resource, "entry": pointed}
    resource.pop("id", None)
    resource.pop("meta", None)
    submission_set = SubmissionSet.objects.create(
        custodian=custodian, record=records[listed.documents[0]], identifier_system=listed.identifier_system,
        identifier_value=listed.identifier_value, resource=resource,
    )  # fmt: skip
    submission_set.entries.set(entries)
    return submission_set, True


@transaction.atomic
def refresh_documents(*, custodian: Organization, record: PatientRecord, documents: list) -> int:
    """Bring the custodian's entries for one record up to what it lists now (a gather job).

    Only documents held by reference, under the custodian's endpoint, are taken; a listed document
    whose content changed gets a new version. Returns how many current documents it listed.
    """
    endpoint = custodian.fhir_endpoint.rstrip("/")
    taken = [d for d in documents if d.data is None and d.url.startswith(f"{endpoint}/")]
    # The custodian's entries of these identifiers, locked: two gathers of one person serialise here.
    existing = {
        (e.master_system, e.master_value): e
        for e in DocumentEntry.objects.select_for_update().filter(
            custodian=custodian, master_value__in=[d.master_value for d in taken]
        )
    }
    new = []
    for document in taken:
        fields = {
            "record": record, "type_code": document.type_code, "categories": document.categories,
            "date": document.date, "period_start": document.period_start, "period_end": document.period_end,
            "creation": document.creation, "author_given": document.author_given,
            "author_family": document.author_family, "facility": document.facility, "events": document.events,
            "setting": document.setting, "format": document.format, "security_labels": document.security_labels,
            "related": document.related, "content_type": document.content_type, "size": document.size,
            "sha1": document.sha1, "url": document.url, "title": document.title[:255], "resource": document.resource,
        }  # fmt: skip
        entry = existing.get((document.master_system, document.master_value))
        if entry is None:
            new.append(DocumentEntry(custodian=custodian, master_system=document.master_system,
                                     master_value=document.master_value, **fields))  # fmt: skip
        elif (entry.sha1, entry.url, entry.security_labels) != (document.sha1, document.url, document.security_labels):
            for name, value in fields.items():
                setattr(entry, name, value)
            entry.version += 1
            if entry.prefetched:
                entry.prefetched = ""  # the checked copy is of the old content
            entry.save()
    DocumentEntry.objects.bulk_create(new, ignore_conflicts=True)  # a concurrent gather may have added one
    return len(taken)
