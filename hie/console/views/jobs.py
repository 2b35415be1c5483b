"""Operations: the HL7 inbox with replay, model training runs with a button to retrain, and the
document exchange (gather jobs, dead letters with replay, the pause switch of each endpoint).

Training and bulk replays run in a Celery worker; their pages poll progress without reloading.
"""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hie.console.roles import ADMINISTRATOR, REVIEWER, audit_patient_view, role_required, staff_actor
from hie.console.views import query_without_page
from hie.exceptions import HieError
from hie.exchange.models import DeadLetter
from hie.exchange.selectors import endpoint_states, open_dead_letters, recent_gather_jobs
from hie.exchange.services import replay_dead_letter, set_endpoint_paused
from hie.exchange.tasks import replay_dead_letters_task
from hie.hl7v2.models import InboundMessage, MessageState
from hie.hl7v2.services import replay
from hie.orgs.models import Organization
from matching.models import MatchModel, RematchRun, TrainingRun
from matching.rematch import request_rematch
from matching.training import request_training

PAGE_SIZE = 50
REPLAYABLE = (MessageState.FAILED,)


@role_required(ADMINISTRATOR)
def inbox(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    messages_in = InboundMessage.objects.select_related("organization").defer("raw").order_by("-pk")
    if state in MessageState.values:
        messages_in = messages_in.filter(state=state)
    page = Paginator(messages_in, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "console/inbox.html", {
        "page": page, "state": state, "states": MessageState.choices, "query": query_without_page(request),
        "replayable": InboundMessage.objects.filter(state__in=REPLAYABLE).count(),
    })  # fmt: skip


@require_POST
@role_required(ADMINISTRATOR)
def inbox_replay(request: HttpRequest) -> HttpResponse:
    count = replay(states=REPLAYABLE)
    messages.success(request, f"{count} failed message(s) put back in line for processing.")
    return redirect("console:inbox")


@role_required(ADMINISTRATOR, REVIEWER)
def training(request: HttpRequest) -> HttpResponse:
    runs = TrainingRun.objects.select_related("model", "requested_by").order_by("-pk")[:20]
    rematches = RematchRun.objects.select_related("requested_by").order_by("-pk")[:10]
    active = MatchModel.objects.filter(status="active").order_by("-version").first()
    return render(request, "console/training.html", {"runs": runs, "active": active, "rematches": rematches})


@require_POST
@role_required(ADMINISTRATOR)
def rematch_start(request: HttpRequest) -> HttpResponse:
    run = request_rematch(requested_by_id=staff_actor(request).staff_user_id)
    messages.success(request, f"Re-match run #{run.pk} queued.")
    return redirect("console:training")


@role_required(ADMINISTRATOR, REVIEWER)
def rematch_progress(request: HttpRequest, pk: int) -> JsonResponse:
    run = get_object_or_404(RematchRun, pk=pk)
    return JsonResponse({"id": run.pk, "status": run.status, "progress": run.progress,
                         "message": run.message or f"{run.done} of {run.total} records"})  # fmt: skip


@require_POST
@role_required(ADMINISTRATOR)
def training_start(request: HttpRequest) -> HttpResponse:
    run = request_training(requested_by_id=staff_actor(request).staff_user_id)
    messages.success(request, f"Training run #{run.pk} queued.")
    return redirect("console:training")


@role_required(ADMINISTRATOR, REVIEWER)
def training_progress(request: HttpRequest, pk: int) -> JsonResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("model"), pk=pk)
    return JsonResponse({
        "id": run.pk, "status": run.status, "progress": run.progress, "message": run.message,
        "model_version": run.model.version if run.model else None,
    })  # fmt: skip


# --- document exchange -------------------------------------------------------------------------

REPLAYING = "dead_letters_replaying"  # session key: the letters of the last bulk replay, for its progress


@role_required(ADMINISTRATOR)
def exchange(request: HttpRequest) -> HttpResponse:
    jobs = recent_gather_jobs()
    # The gather jobs name persons (EUIDs): the view is audited like other pages that show patients.
    audit_patient_view(request, event_type="console-exchange-view", detail={"jobs": len(jobs)})
    return render(request, "console/exchange.html", {
        "jobs": jobs, "letters": open_dead_letters()[:200], "endpoints": endpoint_states(),
        "replaying": bool(request.session.get(REPLAYING)), "now": timezone.now(),
    })  # fmt: skip


@require_POST
@role_required(ADMINISTRATOR)
def dead_letter_replay(request: HttpRequest, pk: int) -> HttpResponse:
    letter = get_object_or_404(DeadLetter, pk=pk)
    try:
        replay_dead_letter(letter=letter, actor=staff_actor(request))
    except HieError as error:
        messages.error(request, str(error))
    else:
        letter.refresh_from_db()
        outcome = "answered" if letter.resolved else "failed again"
        who = "the custodian" if letter.call_id else "the webhook"
        messages.success(request, f"Dead letter #{letter.pk} replayed: {who} {outcome}.")
    return redirect("console:exchange")


@require_POST
@role_required(ADMINISTRATOR)
def dead_letters_replay_all(request: HttpRequest) -> HttpResponse:
    ids = list(open_dead_letters().values_list("pk", flat=True))
    request.session[REPLAYING] = ids
    actor = staff_actor(request)
    transaction.on_commit(lambda: replay_dead_letters_task.delay(ids, actor.staff_user_id))
    messages.success(request, f"{len(ids)} dead letter(s) queued for replay.")
    return redirect("console:exchange")


@role_required(ADMINISTRATOR)
def dead_letters_progress(request: HttpRequest) -> JsonResponse:
    ids = request.session.get(REPLAYING, [])
    replayed = DeadLetter.objects.filter(pk__in=ids).exclude(replays=0)
    settled = replayed.exclude(call__status="pending").exclude(delivery__status="pending").count()
    total = len(ids)
    done = settled >= total
    return JsonResponse({
        "status": "done" if done else "running", "progress": round(100 * settled / total) if total else 100,
        "message": f"{settled} of {total} replayed",
    })  # fmt: skip


@require_POST
@role_required(ADMINISTRATOR)
def endpoint_pause(request: HttpRequest, pk: int) -> HttpResponse:
    organization = get_object_or_404(Organization, pk=pk)
    paused = request.POST.get("paused") == "true"
    set_endpoint_paused(organization=organization, paused=paused, actor=staff_actor(request))
    messages.success(request, f"Calls to {organization.name} {'paused' if paused else 'resumed'}.")
    return redirect("console:exchange")
