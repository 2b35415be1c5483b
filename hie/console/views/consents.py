"""Consent clerk pages: record a consent (with the scanned form), withdraw one, and the
privacy officer's review queue of break-the-glass access."""

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from consent.models import BreakGlass, Consent
from consent.selectors import break_glass_awaiting_review
from consent.services import record_consent, review_break_glass, withdraw_consent
from hie.audit.models import Action
from hie.audit.services import record_event
from hie.console.forms import ConsentForm, ReasonForm
from hie.console.roles import CONSENT_CLERK, audit_patient_view, role_required, staff_actor
from hie.exceptions import HieError
from hie.fhir.patient import euid_system
from matching.models import PersonStatus
from matching.selectors import person_by_euid


@role_required(CONSENT_CLERK)
def consent_new(request: HttpRequest, euid: str) -> HttpResponse:
    """Record a consent under the person's EUID, so that it follows the person through merges."""
    person = person_by_euid(euid)
    if person is None or person.status != PersonStatus.ACTIVE:
        raise Http404("no such person")
    form = ConsentForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            consent = record_consent(
                patient_system=euid_system(), patient_value=person.euid,
                policy_rule=form.cleaned_data["policy_rule"], provision=form.provision(),
                source=form.cleaned_data["source"], actor=staff_actor(request),
                collected_by=form.cleaned_data["collected_by"], attachment=form.cleaned_data["scanned_form"],
            )  # fmt: skip
        except HieError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Consent #{consent.pk} recorded.")
            return redirect("console:person", euid=person.euid)
    audit_patient_view(request, event_type="console-consent-form", person_euid=person.euid)
    return render(request, "console/consent_new.html", {"person": person, "form": form})


@require_POST
@role_required(CONSENT_CLERK)
def consent_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    consent = get_object_or_404(Consent, pk=pk)
    euid = request.POST.get("euid", "")
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason to withdraw a consent.")
    else:
        try:
            withdraw_consent(consent=consent, actor=staff_actor(request), reason=form.cleaned_data["reason"])
            messages.success(request, f"Consent #{consent.pk} withdrawn.")
        except HieError as error:
            messages.error(request, str(error))
    return redirect("console:person", euid=euid) if person_by_euid(euid) else redirect("console:home")


@role_required(CONSENT_CLERK)
def consent_scan(request: HttpRequest, pk: int) -> HttpResponse:
    consent = get_object_or_404(Consent, pk=pk)
    if not consent.attachment:
        raise Http404("this consent has no scanned form")
    record_event(actor=staff_actor(request), action=Action.READ, event_type="console-consent-scan",
                 resource_type="Consent", resource_id=str(consent.pk))  # fmt: skip
    return FileResponse(consent.attachment.open("rb"), as_attachment=True)


@role_required(CONSENT_CLERK)
def break_glass_queue(request: HttpRequest) -> HttpResponse:
    grants = break_glass_awaiting_review()
    audit_patient_view(request, event_type="console-break-glass-queue", detail={"grants": len(grants)})
    return render(request, "console/break_glass.html", {"grants": grants})


@require_POST
@role_required(CONSENT_CLERK)
def break_glass_review(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_object_or_404(BreakGlass.objects.select_related("person"), pk=pk)
    try:
        review_break_glass(grant=grant, actor=staff_actor(request), note=request.POST.get("note", ""))
        messages.success(request, f"Access #{grant.pk} reviewed.")
    except HieError as error:
        messages.error(request, str(error))
    return redirect("console:break-glass")
