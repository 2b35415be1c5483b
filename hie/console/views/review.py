"""The review queue and the review page, where reviewers decide possible matches."""

from itertools import pairwise

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hie.console.roles import REVIEWER, audit_patient_view, role_required, staff_actor
from hie.console.selectors import access_changes, access_to_records, records_of_persons
from hie.console.views import query_without_page, report_access_changes
from hie.exceptions import HieError
from hie.orgs.selectors import active_organizations
from matching.models import Person, ReviewStatus, ReviewTask
from matching.review import compare_review, next_open_review, open_reviews
from matching.score import auto_link_threshold, review_threshold
from matching.services import decide_review

PAGE_SIZE = 25
SKIPPED = "review_skipped"  # session key: tasks this reviewer skipped, not offered again as "next"


def score_bands() -> list[tuple[str, float, float]]:
    """The review range split in tenths (a band is [low, high)), for the queue's filter."""
    low, high = review_threshold(), auto_link_threshold()
    edges = sorted({low, high, *(x / 10 for x in range(11) if low < x / 10 < high)})
    return [(f"{a:.2f} to {b:.2f}", a, b) for a, b in pairwise(edges)]


def _order(request: HttpRequest) -> str:
    return "age" if request.GET.get("order", request.session.get("review_order")) == "age" else "score"


@role_required(REVIEWER)
def review_queue(request: HttpRequest) -> HttpResponse:
    bands = score_bands()
    band = next((b for b in bands if b[0] == request.GET.get("band")), None)
    organization_id = request.GET.get("organization", "")
    order = _order(request)
    request.session["review_order"] = order
    tasks = open_reviews(
        organization_id=int(organization_id) if organization_id.isdecimal() else None,
        min_score=band[1] if band else None,
        max_score=band[2] if band else None,
        order=order,
    )
    page = Paginator(tasks, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "console/review_queue.html", {
        "page": page, "bands": bands, "band": band[0] if band else "", "order": order,
        "organizations": active_organizations(), "organization_id": organization_id,
        "query": query_without_page(request),
    })  # fmt: skip


@role_required(REVIEWER)
def review_task(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(ReviewTask.objects.select_related("record__organization", "decided_by"), pk=pk)
    comparisons = compare_review(task)
    shown = comparisons[0].person.euid if comparisons else ""
    audit_patient_view(request, event_type="console-review-view", person_euid=shown, detail={"task": task.pk})
    return render(request, "console/review_task.html", {
        "task": task, "record": task.record, "comparisons": comparisons, "is_open": task.status == ReviewStatus.OPEN,
    })  # fmt: skip


@require_POST
@role_required(REVIEWER)
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(ReviewTask, pk=pk)
    decision = request.POST.get("decision")
    skipped = set(request.session.get(SKIPPED, []))
    candidates = set(task.candidates.values_list("person_id", flat=True))
    affected = [task.record_id, *records_of_persons(candidates)] if decision in ("same", "different") else []
    before = access_to_records(affected)
    try:
        if decision == "same":
            person = get_object_or_404(Person, euid=request.POST.get("person", ""))
            decide_review(task=task, same_person=person, actor=staff_actor(request))
            messages.success(request, f"Linked to {person.euid}.")
        elif decision == "different":
            decide_review(task=task, same_person=None, actor=staff_actor(request))
            messages.success(request, "Recorded as not the same person; the pair will not be proposed again.")
        elif decision == "skip":
            skipped.add(task.pk)
            request.session[SKIPPED] = sorted(skipped)
        else:
            messages.error(request, "Choose same person, not the same person, or skip.")
            return redirect("console:review-task", pk=task.pk)
    except HieError as error:
        messages.error(request, str(error))
        return redirect("console:review-task", pk=task.pk)
    if affected:
        report_access_changes(request, access_changes(before, access_to_records(affected)))
    following = next_open_review(after_skipping=skipped, order=_order(request))
    if following is None:
        messages.info(request, "No more open reviews." if not skipped else "Only skipped reviews are left.")
        return redirect(reverse("console:review-queue"))
    return redirect("console:review-task", pk=following.pk)
