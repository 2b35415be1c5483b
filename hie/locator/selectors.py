"""Reading the record locator: a person's documents at every custodian, filtered as MHD ITI-67 asks."""

from dataclasses import dataclass, field
from datetime import date, datetime

from django.utils import timezone

from consent.decide import Decision, decide
from consent.selectors import consents_of_person, implicit_policies
from hie.datesearch import date_matches
from hie.locator.models import DocumentEntry, SubmissionSet
from matching.models import Link, LinkState, Person


@dataclass
class DocumentCriteria:
    """An ITI-67 query in the locator's terms. Each list is OR within itself; lists combine with AND.

    Tokens are "system|code", "|code" or "code" (any system), or "system|" (any code of the system).
    Date terms are (FHIR prefix, first day, last day).
    """

    statuses: list[str]
    types: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    date: list[tuple[str, date, date]] = field(default_factory=list)
    period: list[tuple[str, date, date]] = field(default_factory=list)
    creation: list[tuple[str, date, date]] = field(default_factory=list)
    author_given: list[str] = field(default_factory=list)
    author_family: list[str] = field(default_factory=list)
    facility: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    setting: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    security_labels: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)
    related: list[str] = field(default_factory=list)


def token_matches(wanted: str, stored: str) -> bool:
    if "|" not in wanted:
        return stored.rsplit("|", 1)[-1] == wanted
    system, code = wanted.split("|", 1)
    stored_system, _, stored_code = stored.rpartition("|")
    return (not system or system == stored_system) and (not code or code == stored_code)


def _any_token(wanted: list[str], stored: list[str]) -> bool:
    return not wanted or any(token_matches(w, s) for w in wanted for s in stored)


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _meets(entry: DocumentEntry, c: DocumentCriteria) -> bool:
    master = f"{entry.master_system}|{entry.master_value}"
    period = (_day(entry.period_start), _day(entry.period_end or entry.period_start))
    labels = {t.rsplit("|", 1)[-1] for t in c.security_labels}
    return (
        _any_token(c.types, [entry.type_code])
        and _any_token(c.categories, entry.categories)
        and all(date_matches(t, _day(entry.date)) for t in c.date)
        and all(date_matches(t, *period) for t in c.period)
        and all(date_matches(t, _day(entry.creation)) for t in c.creation)
        and (not c.author_given or any(g.lower() in entry.author_given for g in c.author_given))
        and (not c.author_family or any(f.lower() in entry.author_family for f in c.author_family))
        and _any_token(c.facility, [entry.facility])
        and _any_token(c.events, entry.events)
        and _any_token(c.setting, [entry.setting])
        and _any_token(c.formats, [entry.format])
        and (not labels or bool(labels & set(entry.security_labels)))
        and _any_token(c.identifiers, [master])
        and _any_token(c.related, entry.related)
    )  # fmt: skip


def documents_of_person(person: Person, criteria: DocumentCriteria) -> list[DocumentEntry]:
    """The person's documents at every custodian (through every record confirmed as the person), newest first.

    One indexed query; the metadata filters run on the few entries one person has.
    """
    records = Link.objects.filter(person=person, state=LinkState.MATCH).values("record_id")
    entries = (
        DocumentEntry.objects.filter(record_id__in=records, status__in=criteria.statuses)
        .select_related("custodian")
        .order_by("-date", "-pk")
    )
    return [e for e in entries if _meets(e, criteria)]


def document_entry(entry_id: str) -> DocumentEntry | None:
    if not entry_id.isdecimal():
        return None
    return DocumentEntry.objects.select_related("custodian", "record").filter(pk=int(entry_id)).first()


def visible_documents(
    person: Person, entries: list[DocumentEntry], requester: object, purpose: str
) -> tuple[list[DocumentEntry], list[tuple[dict, Decision]]]:
    """The entries `requester` may see for `purpose`, by consent.decide() per custodian and per the
    document's security labels: a document any of whose labels would be withheld is hidden whole.
    Returns the visible entries and the decisions taken (one per custodian and label set), each with
    what it was about, for the audit."""
    at = timezone.now()
    consents = consents_of_person(person, at)  # read once for every decision of this request
    policies = implicit_policies({e.custodian_id for e in entries})
    decisions: dict[tuple[int, frozenset[str]], Decision] = {}
    visible = []
    for entry in entries:
        key = (entry.custodian_id, frozenset(entry.security_labels))
        if key not in decisions:
            decisions[key] = decide(person, requester, purpose, key[1], custodian=entry.custodian, at=at,
                                    consents=consents, custodian_policy=policies.get(entry.custodian_id))  # fmt: skip
        decision = decisions[key]
        if decision.permitted and not decision.redact:
            visible.append(entry)
    about = [({"custodian": custodian, "labels": sorted(labels)}, d) for (custodian, labels), d in decisions.items()]
    return visible, about


def submission_set(list_id: str) -> SubmissionSet | None:
    if not list_id.isdecimal():
        return None
    return SubmissionSet.objects.select_related("record").filter(pk=int(list_id)).first()


def submission_sets_of_person(person: Person, *, identifiers: list[str]) -> list[SubmissionSet]:
    """The person's SubmissionSets at every custodian (MHD ITI-66), newest first; `identifiers`
    ("system|value" or a bare value) narrows them to those with one of these uniqueIds."""
    records = Link.objects.filter(person=person, state=LinkState.MATCH).values("record_id")
    found = SubmissionSet.objects.filter(record_id__in=records).order_by("-created_at", "-pk")
    sets = list(found)
    if identifiers:
        sets = [s for s in sets if any(token_matches(i, f"{s.identifier_system}|{s.identifier_value}")
                                       for i in identifiers)]  # fmt: skip
    return sets


def entries_of(submission: SubmissionSet) -> list[DocumentEntry]:
    return list(submission.entries.select_related("custodian").order_by("pk"))
