"""Operations: the HL7 inbox with replay, and model training runs with a button to retrain.

Training runs in a Celery worker; its page polls the run's progress without reloading.
"""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hie.console.roles import ADMINISTRATOR, REVIEWER, role_required, staff_actor
from hie.console.views import query_without_page
from hie.hl7v2.models import InboundMessage, MessageState
from hie.hl7v2.services import replay
from matching.models import MatchModel, TrainingRun
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
    active = MatchModel.objects.filter(status="active").order_by("-version").first()
    return render(request, "console/training.html", {"runs": runs, "active": active})


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
