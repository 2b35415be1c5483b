"""Signing in to the console: password with throttled failures, then a TOTP code where one is needed."""

import segno
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import user_has_device

from hie.console import security
from hie.console.roles import ADMINISTRATOR, role_required, staff_actor, user_roles


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\d{6}$",
        label="Code from your authenticator app",
        error_messages={"invalid": "Enter the 6-digit code."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class ConsoleLoginView(LoginView):
    template_name = "console/login.html"

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        username = request.POST.get("username", "")
        address = request.META.get("REMOTE_ADDR", "")
        if security.login_locked(username, address):
            # The password is not even checked while the lock holds.
            return self.render_to_response(self.get_context_data(locked=True), status=429)
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            security.note_login(request.user.pk, username, address)
        else:
            security.note_failed_login(username, address)
        return response


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return "/console/"


@login_required
def second_factor(request: HttpRequest) -> HttpResponse:
    """Ask for the TOTP code of an enrolled device."""
    if not user_has_device(request.user):
        return redirect(f"/console/second-factor/set-up/?next={_next(request)}")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = security.verified_device(request.user, form.cleaned_data["token"])
        if device is not None:
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error("token", "That code is not right (or too many tries: wait a minute).")
    return render(request, "console/second_factor.html", {"form": form, "next": _next(request)})


@login_required
def second_factor_setup(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator app: scan the code, then prove it with the first code it shows."""
    if user_has_device(request.user):
        return redirect(f"/console/second-factor/?next={_next(request)}")
    device = security.pending_device(request.user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if security.confirm_device(device, form.cleaned_data["token"]):
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error("token", "That code is not right; check the clock of your phone and try the next one.")
    qr = segno.make(device.config_url).svg_inline(scale=4)
    key = device.config_url.split("secret=")[1].split("&")[0]
    response = render(request, "console/second_factor_setup.html",
                      {"form": form, "qr": qr, "key": key, "next": _next(request)})  # fmt: skip
    response["Cache-Control"] = "no-store"
    return response


@role_required(ADMINISTRATOR)
def staff(request: HttpRequest) -> HttpResponse:
    users = get_user_model().objects.filter(is_active=True).order_by("username").select_related("second_factor")
    rows = [
        {"user": u, "roles": sorted(user_roles(u)), "enrolled": user_has_device(u),
         "required": security.second_factor_required(u)}
        for u in users
    ]  # fmt: skip
    return render(request, "console/staff.html", {"rows": rows, "require_all": settings.CONSOLE_REQUIRE_TOTP})


@require_POST
@role_required(ADMINISTRATOR)
def staff_second_factor(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=pk)
    action = request.POST.get("action")
    if action == "reset":
        security.reset_second_factor(user=user, actor=staff_actor(request))
    else:
        security.set_second_factor_requirement(user=user, required=action == "require", actor=staff_actor(request))
    return redirect("console:staff")
