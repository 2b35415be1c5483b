"""Finding a person, their page, and the link changes staff make from it (split, undo)."""

import re
from datetime import date

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hie.console.forms import PersonSearchForm, ReasonForm
from hie.console.roles import CONSENT_CLERK, REVIEWER, audit_patient_view, role_required, staff_actor
from hie.console.selectors import (
    access_changes,
    access_to_records,
    disclosures_of_person,
    person_page,
    records_of_persons,
)
from hie.console.views import report_access_changes
from hie.exceptions import HieError
from matching.models import LinkChange, PatientRecord, Person
from matching.selectors import PersonCriteria, person_by_euid, search_persons
from matching.services import undo_change as undo_link_change
from matching.services import unlink_record

SEARCH_LIMIT = 50
EUID = re.compile(r"^E[0-9A-Z]{12}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def criteria_from_query(q: str) -> PersonCriteria:
    """An EUID, one identifier value, or 'family [given] [YYYY-MM-DD]'."""
    words = q.replace(",", " ").split()
    if len(words) == 1 and EUID.match(words[0].upper()):
        return PersonCriteria(euids=[words[0].upper()])
    if len(words) == 1 and any(ch.isdigit() for ch in words[0]) and not DAY.match(words[0]):
        return PersonCriteria(identifiers=[(None, words[0])])
    days = [w for w in words if DAY.match(w)]
    names = [w for w in words if not DAY.match(w)]
    criteria = PersonCriteria(family=names[:1], given=names[1:2])
    for day in days:
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            continue
        criteria.birth_date.append(("eq", parsed, parsed))
    return criteria


@role_required(REVIEWER, CONSENT_CLERK)
def person_search(request: HttpRequest) -> HttpResponse:
    form = PersonSearchForm(request.GET or None)
    persons = None
    if form.is_valid():
        persons = search_persons(criteria_from_query(form.cleaned_data["q"]), limit=SEARCH_LIMIT)
        audit_patient_view(request, event_type="console-person-search", detail={"results": len(persons)})
    return render(request, "console/person_search.html", {"form": form, "persons": persons, "limit": SEARCH_LIMIT})


@role_required(REVIEWER, CONSENT_CLERK)
def person_detail(request: HttpRequest, euid: str) -> HttpResponse:
    stored = get_object_or_404(Person, euid=euid)
    person = person_by_euid(euid)
    if person.pk != stored.pk:
        messages.info(request, f"{euid} was merged into {person.euid}; this is the surviving person.")
        return redirect("console:person", euid=person.euid)
    audit_patient_view(request, event_type="console-person-view", person_euid=person.euid)
    return render(request, "console/person.html", {
        "page": person_page(person), "disclosures": disclosures_of_person(person), "reason_form": ReasonForm(),
    })  # fmt: skip


@require_POST
@role_required(REVIEWER)
def split_record(request: HttpRequest, euid: str, record_pk: int) -> HttpResponse:
    """Unmerge: take one record off the person into a new person of its own."""
    record = get_object_or_404(PatientRecord, pk=record_pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason to split a record off.")
        return redirect("console:person", euid=euid)
    affected = records_of_persons({link.person_id for link in record.links.all()})
    before = access_to_records(affected)
    try:
        change = unlink_record(record=record, actor=staff_actor(request), reason=form.cleaned_data["reason"])
    except HieError as error:
        messages.error(request, str(error))
        return redirect("console:person", euid=euid)
    new_person = change.events.first().person_after
    messages.success(request, f"Record split off into {new_person.euid}.")
    report_access_changes(request, access_changes(before, access_to_records(affected)))
    return redirect("console:person", euid=euid)


@require_POST
@role_required(REVIEWER)
def undo_change(request: HttpRequest, pk: int) -> HttpResponse:
    """Undo a merge or any other link change: every link it moved goes back as it was."""
    change = get_object_or_404(LinkChange, pk=pk)
    euid = request.POST.get("euid", "")
    back = ("console:person", {"euid": euid}) if Person.objects.filter(euid=euid).exists() else ("console:home", {})
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason to undo a change.")
        return redirect(back[0], **back[1])
    persons = {p for e in change.events.all() for p in (e.person_before_id, e.person_after_id) if p}
    affected = records_of_persons(persons | {change.survivor_id, change.retired_person_id} - {None})
    before = access_to_records(affected)
    try:
        undo_link_change(change=change, actor=staff_actor(request), reason=form.cleaned_data["reason"])
    except HieError as error:
        messages.error(request, str(error))
        return redirect(back[0], **back[1])
    messages.success(request, f"Change #{change.pk} ({change.get_kind_display()}) undone.")
    report_access_changes(request, access_changes(before, access_to_records(affected)))
    return redirect(back[0], **back[1])
