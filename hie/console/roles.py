"""Staff roles are Django groups; each console page names the roles that may open it."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from hie.audit.models import Action
from hie.audit.services import Actor, record_event
from hie.console.security import second_factor_required

REVIEWER = "reviewer"
CONSENT_CLERK = "consent_clerk"
ADMINISTRATOR = "administrator"
ALL_ROLES = (REVIEWER, CONSENT_CLERK, ADMINISTRATOR)


def user_roles(user: object) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    return set(user.groups.values_list("name", flat=True))


def role_required(*roles: str) -> Callable:
    """Open the page to staff in any of `roles` (administrators may open every page)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if not request.user.is_verified() and second_factor_required(request.user):
                return redirect(f"{reverse('console:second-factor')}?next={request.get_full_path()}")
            held = user_roles(request.user)
            if not held & {*roles, ADMINISTRATOR}:
                raise PermissionDenied
            request.roles = held
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def staff_actor(request: HttpRequest) -> Actor:
    return Actor.from_request(request)


def audit_patient_view(
    request: HttpRequest, *, event_type: str, person_euid: str = "", detail: dict | None = None
) -> None:
    """Every console page that shows patient data leaves a read event naming whom it showed."""
    record_event(actor=staff_actor(request), action=Action.READ, event_type=event_type, resource_type="Patient",
                 person_euid=person_euid, detail=detail or {})  # fmt: skip


def roles_context(request: HttpRequest) -> dict:
    """Template context: the signed-in user's roles, so the navigation shows only their pages."""
    held = user_roles(getattr(request, "user", None))
    return {"roles": sorted(held), "is_admin": ADMINISTRATOR in held,
            "can_review": bool(held & {REVIEWER, ADMINISTRATOR}),
            "can_consent": bool(held & {CONSENT_CLERK, ADMINISTRATOR})}  # fmt: skip
