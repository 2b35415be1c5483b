"""Members and their API clients (administrators): create a client, rotate its secret, revoke it."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hie.audit.models import Action
from hie.audit.services import record_event
from hie.console.forms import ApiClientForm
from hie.console.roles import ADMINISTRATOR, role_required, staff_actor
from hie.exceptions import HieError
from hie.orgs.models import ApiClient, Organization
from hie.orgs.selectors import member_overview
from hie.orgs.services import create_api_client, revoke_client, rotate_client_secret, set_fhir_endpoint


def _audit(request: HttpRequest, event_type: str, client: ApiClient) -> None:
    record_event(actor=staff_actor(request), action=Action.UPDATE, event_type=event_type,
                 resource_type="Organization", resource_id=str(client.organization_id),
                 detail={"client": client.client_id})  # fmt: skip


@role_required(ADMINISTRATOR)
def members(request: HttpRequest) -> HttpResponse:
    return render(request, "console/members.html", {"members": member_overview()})


@role_required(ADMINISTRATOR)
def member_detail(request: HttpRequest, pk: int) -> HttpResponse:
    organization = get_object_or_404(Organization.objects.prefetch_related("identifier_systems"), pk=pk)
    form = ApiClientForm(request.POST or None, scopes=sorted(settings.FHIR_SCOPES))
    if request.method == "POST" and form.is_valid():
        try:
            issued = create_api_client(organization=organization, scopes=form.cleaned_data["scopes"],
                                       label=form.cleaned_data["label"])  # fmt: skip
        except HieError as error:
            form.add_error(None, str(error))
        else:
            _audit(request, "api-client-create", issued.client)
            return _show_secret(request, organization, issued.client, issued.client_secret)
    clients = organization.api_clients.order_by("-revoked_at", "name")
    return render(request, "console/member.html", {"organization": organization, "clients": clients, "form": form})


def _show_secret(request: HttpRequest, organization: Organization, client: ApiClient, secret: str) -> HttpResponse:
    # The plain secret exists only in this response: it is stored hashed.
    response = render(request, "console/client_secret.html",
                      {"organization": organization, "client": client, "secret": secret})  # fmt: skip
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(ADMINISTRATOR)
def client_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(ApiClient.objects.select_related("organization"), pk=pk, revoked_at__isnull=True)
    secret = rotate_client_secret(client)
    _audit(request, "api-client-rotate", client)
    return _show_secret(request, client.organization, client, secret)


@require_POST
@role_required(ADMINISTRATOR)
def client_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(ApiClient, pk=pk, revoked_at__isnull=True)
    revoke_client(client)
    _audit(request, "api-client-revoke", client)
    messages.success(request, f"Client {client.client_id} revoked; its tokens no longer work.")
    return redirect("console:member", pk=client.organization_id)


@require_POST
@role_required(ADMINISTRATOR)
def member_endpoint(request: HttpRequest, pk: int) -> HttpResponse:
    organization = get_object_or_404(Organization, pk=pk)
    try:
        set_fhir_endpoint(organization=organization, fhir_endpoint=request.POST.get("fhir_endpoint", "").strip())
    except HieError as error:
        messages.error(request, str(error))
    else:
        record_event(actor=staff_actor(request), action=Action.UPDATE, event_type="member-endpoint",
                     resource_type="Organization", resource_id=str(organization.pk))  # fmt: skip
        messages.success(request, f"Endpoint of {organization.name} saved.")
    return redirect("console:member", pk=organization.pk)
