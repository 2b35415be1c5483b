"""Audit log search, with the matching events as CSV."""

import csv

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from hie.console.forms import AuditSearchForm
from hie.console.roles import ADMINISTRATOR, role_required
from hie.console.selectors import AuditQuery, audit_event_types, search_audit
from hie.console.views import query_without_page

PAGE_SIZE = 50
CSV_COLUMNS = ("sequence", "recorded_at", "event_type", "action", "outcome", "organization", "staff_user",
               "resource_type", "resource_id", "person_euid", "purpose_of_use", "request_id")  # fmt: skip


class _Echo:
    def write(self, value: str) -> str:
        return value


def _query(form: AuditSearchForm) -> AuditQuery:
    if not form.is_valid():
        return AuditQuery(event_type="\0")  # an invalid form finds nothing rather than everything
    data = form.cleaned_data
    organization = data["organization"]
    return AuditQuery(
        event_type=data["event_type"],
        organization_id=organization.pk if organization else None,
        person_euid=data["person_euid"].strip().upper(),
        since=data["since"],
        until=data["until"],
    )


@role_required(ADMINISTRATOR)
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditSearchForm(request.GET)
    events = search_audit(_query(form))
    if request.GET.get("format") == "csv":
        writer = csv.writer(_Echo())
        rows = (
            [e.sequence, e.recorded_at.isoformat(), e.event_type, e.get_action_display(), e.get_outcome_display(),
             e.organization.name if e.organization else "", e.staff_user.get_username() if e.staff_user else "",
             e.resource_type, e.resource_id, e.person_euid, e.purpose_of_use, e.request_id]
            for e in events.iterator(chunk_size=2000)
        )  # fmt: skip
        lines = (writer.writerow(row) for row in _with_header(rows))
        response = StreamingHttpResponse(lines, content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        return response
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "console/audit.html", {
        "form": form, "page": page, "event_types": audit_event_types(), "query": query_without_page(request),
    })  # fmt: skip


def _with_header(rows: object) -> object:
    yield list(CSV_COLUMNS)
    yield from rows
