"""Mapping between MHD resources (DocumentReference, Binary, List, transaction Bundle) and the record locator.

ITI-65 submissions come in as a transaction Bundle; each DocumentReference becomes a
DocumentSubmission the locator's services understand. Entries go out as DocumentReferences whose
attachment URL points at the node (ITI-68 retrieval goes through the node, never around it).
"""

import base64
import binascii
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.list import List as FhirList
from pydantic import ValidationError
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from hie.exceptions import ValidationFailed
from hie.fhir.body import parse_json
from hie.fhir.patient import validation_message

MHD_RESOURCES = {"DocumentReference", "Binary", "List"}
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")  # RFC 3986 section 2.3
PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
DEFAULT_PORTS = {"http": 80, "https": 443}
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
# A Patient id as the node hands them out: a member's record (a number) or a person (an EUID).
_PATIENT_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


@dataclass
class DocumentSubmission:
    """One DocumentReference of an ITI-65 transaction, in the locator's terms."""

    where: str  # "Bundle.entry[i]", for error messages
    master_system: str
    master_value: str
    patient_system: str  # the subject as an identifier ...
    patient_value: str
    content_type: str
    patient_id: str = ""  # ... or as Patient/<id>: a member's record id or an EUID (hie.locator resolves it)
    binary_url: str = ""  # the fullUrl of the Binary entry that holds the content, if one does
    url: str = ""  # by reference
    data: bytes | None = None  # by value
    size: int | None = None
    sha1: str = ""  # hex
    title: str = ""
    type_code: str = ""
    categories: list[str] = field(default_factory=list)
    date: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    creation: datetime | None = None
    author_given: list[str] = field(default_factory=list)
    author_family: list[str] = field(default_factory=list)
    facility: str = ""
    events: list[str] = field(default_factory=list)
    setting: str = ""
    format: str = ""
    security_labels: list[str] = field(default_factory=list)
    related: list[str] = field(default_factory=list)
    replaces: list[tuple[str, str]] = field(default_factory=list)  # ("id", "123") or ("identifier", "sys|value")
    resource: dict = field(default_factory=dict)


@dataclass
class SubmissionList:
    """The SubmissionSet List of an ITI-65 transaction."""

    identifier_system: str
    identifier_value: str
    documents: list[int]  # indexes into Submission.documents of the DocumentReferences it lists
    resource: dict


@dataclass
class Submission:
    documents: list[DocumentSubmission]
    entry_kinds: list[str]  # the resource type of each Bundle entry, in order (the response answers each)
    submission_set: str = ""  # List (SubmissionSet) identifier, "system|value"
    # Per Bundle entry: the index of the document it is (DocumentReference) or holds the content of (Binary)
    entry_documents: list[int | None] = field(default_factory=list)
    submission_list: SubmissionList | None = None


def _token(coding: dict | None) -> str:
    if not coding:
        return ""
    return f"{coding.get('system', '')}|{coding.get('code', '')}"


def _first_coding(concept: dict | None) -> dict | None:
    codings = (concept or {}).get("coding") or []
    return codings[0] if codings else None


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value[:10]) if len(value) >= 10 else None
        parsed = datetime(day.year, day.month, day.day) if day else None
    if parsed is not None and parsed.tzinfo is None:
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _identifier(identifier: dict | None) -> str:
    if not identifier or not identifier.get("value"):
        return ""
    return f"{identifier.get('system', '')}|{identifier['value']}"


def parse_transaction(body: bytes, *, fhir_base: str = "") -> Submission:
    """An ITI-65 transaction Bundle as a Submission; raises ValidationFailed naming the entry at fault.
    `fhir_base` is the node's FHIR base URL: a subject given as an absolute URL must be under it."""
    content = parse_json(body)
    if not isinstance(content, dict) or content.get("resourceType") != "Bundle":
        raise ValidationFailed("the body must be a Bundle resource")
    if content.get("type") != "transaction":
        raise ValidationFailed("Bundle.type must be transaction (MHD ITI-65)")
    try:
        Bundle.model_validate({**content, "entry": []})
    except ValidationError as error:
        raise ValidationFailed(validation_message(error, "the Bundle")) from None
    entries = content.get("entry") or []
    if not isinstance(entries, list):
        raise ValidationFailed("Bundle.entry must be a list")
    kinds = []
    binaries: dict[str, bytes] = {}
    binary_entries: dict[str, int] = {}
    submission_set = ""
    lists = []
    documents = []
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind not in MHD_RESOURCES:
            raise ValidationFailed(f"{where}: an MHD submission holds only DocumentReference, Binary and List")
        kinds.append(kind)
        if kind == "Binary":
            binary = _validated(Binary, resource, where)
            binaries[entry.get("fullUrl", "")] = _decode(binary.data, where)
            binary_entries[entry.get("fullUrl", "")] = i
        elif kind == "List":
            _validated(FhirList, resource, where)
            lists.append((where, resource))
            identifiers = resource.get("identifier") or []
            submission_set = _identifier(identifiers[0]) if identifiers else ""
        else:
            documents.append((i, where, entry.get("fullUrl", ""), _validated(DocumentReference, resource, where)))
    if not documents:
        raise ValidationFailed("the Bundle holds no DocumentReference")
    parsed = [_document(where, ref.model_dump(mode="json", exclude_none=True), binaries, fhir_base)
              for _, where, _, ref in documents]  # fmt: skip
    entry_documents: list[int | None] = [None] * len(entries)
    for n, (i, *_) in enumerate(documents):
        entry_documents[i] = n
    for url, i in binary_entries.items():
        owners = [n for n, document in enumerate(parsed) if document.binary_url == url]
        if not owners:
            raise ValidationFailed(f"Bundle.entry[{i}]: no DocumentReference of the Bundle names this Binary")
        entry_documents[i] = owners[0]
    if len(lists) > 1:
        raise ValidationFailed(f"{lists[1][0]}: an MHD submission holds one SubmissionSet List")
    listed = _submission_list(*lists[0], [url for _, _, url, _ in documents]) if lists else None
    return Submission(parsed, kinds, submission_set, entry_documents, listed)


def _submission_list(where: str, resource: dict, document_urls: list[str]) -> SubmissionList:
    """MHD 4.2 SubmissionSet: a List with status current, mode working, code submissionset, a
    uniqueId identifier, and entries naming the Bundle's DocumentReferences by fullUrl."""
    if resource.get("status") != "current" or resource.get("mode") != "working":
        raise ValidationFailed(f"{where}: a SubmissionSet List has status current and mode working (MHD)")
    codes = [(c.get("system"), c.get("code")) for c in (resource.get("code") or {}).get("coding") or []]
    if (MHD_LIST_TYPES, "submissionset") not in codes:
        raise ValidationFailed(f"{where}: a SubmissionSet List has the code {MHD_LIST_TYPES}|submissionset")
    identifiers = [i for i in resource.get("identifier") or [] if i.get("value")]
    official = next((i for i in identifiers if i.get("use") == "official"), identifiers[0] if identifiers else None)
    if official is None:
        raise ValidationFailed(f"{where}: a SubmissionSet List needs its uniqueId as an identifier")
    listed = []
    for item in resource.get("entry") or []:
        reference = (item.get("item") or {}).get("reference", "")
        if reference not in document_urls:
            raise ValidationFailed(f"{where}: List.entry must name DocumentReferences of the Bundle by fullUrl")
        listed.append(document_urls.index(reference))
    if not listed:
        raise ValidationFailed(f"{where}: a SubmissionSet List names the DocumentReferences it submits")
    return SubmissionList(official.get("system", ""), official["value"], listed, resource)


def _validated(model: type, resource: dict, where: str) -> object:
    try:
        return model.model_validate(resource)
    except ValidationError as error:
        raise ValidationFailed(validation_message(error, where)) from None


def _decode(data: object, where: str) -> bytes:
    try:
        return base64.b64decode(data or b"", validate=True) if not isinstance(data, bytes) else data
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{where}: data is not base64") from None


def reference_url(url: str, where: str) -> str:
    """The address a by-reference document will be fetched from, in RFC 3986 normal form.

    The locator lets the node fetch only under the member's registered endpoint, by prefix, and
    the HTTP client removes dot segments before it sends: `{endpoint}/../../etc/passwd` must be
    compared as the `/etc/passwd` it becomes. So: escapes of unreserved characters decoded
    (`%2e%2e` is `..`), dot segments removed, scheme and host lower case, the default port
    dropped, and escaped or back slashes refused, since a server may read them as separators.
    """
    decoded = PERCENT_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if chr(int(m[1], 16)) in UNRESERVED else m[0], url)
    try:
        parsed = parse_url(decoded)
    except LocationParseError:
        raise ValidationFailed(f"{where}: content.attachment.url is not a valid URL") from None
    if "\\" in (parsed.path or "") or re.search(r"%(2f|5c)", parsed.path or "", re.IGNORECASE):
        raise ValidationFailed(f"{where}: the path of content.attachment.url must not contain escaped or back slashes")
    if not parsed.host or parsed.auth:
        raise ValidationFailed(f"{where}: content.attachment.url needs a host and no user information")
    port = None if parsed.port == DEFAULT_PORTS.get(parsed.scheme) else parsed.port
    return parsed._replace(port=port, fragment=None).url


def _patient_id(reference: str, fhir_base: str, where: str) -> str:
    """The id of a subject reference: `Patient/<id>`, or the absolute URL of a Patient of this node
    (`{fhir_base}/Patient/<id>`, as PDQm fullUrls and PIXm targetIds name them)."""
    prefix = f"{fhir_base.rstrip('/')}/Patient/" if fhir_base else None
    if prefix and reference.startswith(prefix):
        patient_id = reference.removeprefix(prefix)
    elif reference.startswith("Patient/"):
        patient_id = reference.removeprefix("Patient/")
    else:
        raise ValidationFailed(f"{where}: subject.reference must be Patient/<id> or the URL of a Patient of this node")
    if not _PATIENT_ID.match(patient_id):
        raise ValidationFailed(f"{where}: subject.reference must name a Patient by its id")
    return patient_id


def _document(where: str, resource: dict, binaries: dict[str, bytes], fhir_base: str = "") -> DocumentSubmission:
    """A DocumentReference (JSON already validated with fhir.resources) in the locator's terms."""
    master = resource.get("masterIdentifier") or {}
    if not master.get("value"):
        raise ValidationFailed(f"{where}: masterIdentifier is required (MHD)")
    if resource.get("status") != "current":
        raise ValidationFailed(f"{where}: a submitted DocumentReference has status current")
    subject = resource.get("subject") or {}
    patient = subject.get("identifier") or {}
    patient_id = _patient_id(subject["reference"], fhir_base, where) if subject.get("reference") else ""
    if not patient_id and (not patient.get("system") or not patient.get("value")):
        raise ValidationFailed(f"{where}: subject must be Patient/<id>, a Patient URL of this node, or the patient's "
                               "identifier (system and value)")  # fmt: skip
    contents = resource.get("content") or []
    if len(contents) != 1:
        raise ValidationFailed(f"{where}: exactly one content is supported")
    attachment = contents[0].get("attachment") or {}
    if not attachment.get("contentType"):
        raise ValidationFailed(f"{where}: content.attachment.contentType is required")
    url, data, binary_url = attachment.get("url", ""), None, ""
    if "data" in attachment:
        data = _decode(attachment["data"], where)
        url = ""
    elif url in binaries:
        data, url, binary_url = binaries[url], "", url
    elif url.startswith("urn:"):
        raise ValidationFailed(f"{where}: content.attachment.url names no Binary of the Bundle")
    elif not url.lower().startswith(("http://", "https://")):
        raise ValidationFailed(f"{where}: content.attachment needs data, a Binary of the Bundle, or an http(s) url")
    else:
        url = reference_url(url, where)
    sha1 = ""
    if attachment.get("hash"):
        sha1 = _decode(attachment["hash"], where).hex()
        if len(sha1) != 40:
            raise ValidationFailed(f"{where}: content.attachment.hash must be a SHA-1 (20 bytes, base64)")
    if data is None and not (attachment.get("size") and sha1):
        raise ValidationFailed(f"{where}: a document registered by reference needs its size and hash")
    context = resource.get("context") or {}
    contained = {f"#{c.get('id')}": c for c in resource.get("contained") or []}
    authors = [contained.get(a.get("reference", "")) or {} for a in resource.get("author") or []]
    names = [n for author in authors for n in author.get("name") or []]
    period = context.get("period") or {}
    return DocumentSubmission(
        where=where,
        master_system=master.get("system", ""),
        master_value=master["value"],
        patient_system="" if patient_id else patient["system"],
        patient_value="" if patient_id else patient["value"],
        patient_id=patient_id,
        binary_url=binary_url,
        content_type=attachment["contentType"],
        url=url,
        data=data,
        size=attachment.get("size"),
        sha1=sha1,
        title=attachment.get("title", "") or resource.get("description", ""),
        type_code=_token(_first_coding(resource.get("type"))),
        categories=[_token(_first_coding(c)) for c in resource.get("category") or []],
        date=_instant(resource.get("date")),
        period_start=_instant(period.get("start")),
        period_end=_instant(period.get("end")),
        creation=_instant(attachment.get("creation")),
        author_given=sorted({g.lower() for n in names for g in n.get("given") or []}),
        author_family=sorted({n["family"].lower() for n in names if n.get("family")}),
        facility=_token(_first_coding(context.get("facilityType"))),
        events=[_token(_first_coding(e)) for e in context.get("event") or []],
        setting=_token(_first_coding(context.get("practiceSetting"))),
        format=_token(contents[0].get("format")),
        security_labels=sorted(
            {
                c.get("code", "")
                for label in resource.get("securityLabel") or []
                for c in label.get("coding") or []
                if c.get("code")
            }
        ),
        related=[_identifier(r.get("identifier")) for r in context.get("related") or [] if r.get("identifier")],
        replaces=[_target(r, where) for r in resource.get("relatesTo") or [] if r.get("code") == "replaces"],
        resource=resource,
    )


def _target(relates_to: dict, where: str) -> tuple[str, str]:
    target = relates_to.get("target") or {}
    reference = target.get("reference", "")
    if reference.startswith("DocumentReference/"):
        return "id", reference.removeprefix("DocumentReference/")
    if target.get("identifier"):
        return "identifier", _identifier(target["identifier"])
    raise ValidationFailed(f"{where}: relatesTo.target must be DocumentReference/<id> or an identifier")


def entry_to_fhir(entry: object, base: str) -> DocumentReference:
    return DocumentReference.model_validate(entry_resource(entry, base))


def entry_resource(entry: object, base: str) -> dict:
    """A locator entry as the DocumentReference a member sees (its id, its custodian, the node's URL),
    as plain JSON: the stored part was validated when it was registered, and searches answer many."""
    resource = dict(entry.resource)
    resource["id"] = str(entry.pk)
    resource["meta"] = {"versionId": str(entry.version), "lastUpdated": entry.updated_at.isoformat()}
    resource["status"] = entry.status
    resource["custodian"] = {"reference": f"Organization/{entry.custodian_id}", "display": entry.custodian.name}
    attachment = dict(resource["content"][0]["attachment"])
    attachment.pop("data", None)
    attachment["url"] = f"{base}/fhir/Binary/{entry.pk}"
    if entry.size is not None:
        attachment["size"] = entry.size
    if entry.sha1:
        attachment["hash"] = base64.b64encode(bytes.fromhex(entry.sha1)).decode()
    resource["content"] = [{**resource["content"][0], "attachment": attachment}]
    return resource


def document_from_custodian(resource: dict, identifier_system: str, local_id: str, where: str) -> DocumentSubmission:
    """A DocumentReference a custodian listed for its patient (a gather job), in the locator's terms;
    `resource` comes from a Bundle validated as a whole (hie.locator.custodian.list_documents).

    The subject is the record the node asked about, whatever reference form the custodian used.
    """
    resource = {**resource, "subject": {"identifier": {"system": identifier_system, "value": local_id}}}
    resource.pop("id", None)
    resource.pop("meta", None)
    return _document(where, resource, {})


def submission_set_resource(submission: object, visible_entry_ids: list[int]) -> dict:
    """A stored SubmissionSet as the List a member sees: its id, and only the entries the member
    may see (hidden documents are left out, as ITI-67 leaves them out)."""
    resource = dict(submission.resource)
    resource["id"] = str(submission.pk)
    resource["meta"] = {"versionId": "1", "lastUpdated": submission.created_at.isoformat()}
    shown = {f"DocumentReference/{pk}" for pk in visible_entry_ids}
    resource["entry"] = [item for item in resource.get("entry") or [] if item["item"]["reference"] in shown]
    return resource
