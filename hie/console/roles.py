"""Staff roles are Django groups; each console page names the roles that may open it."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

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
            held = user_roles(request.user)
            if not held & {*roles, ADMINISTRATOR}:
                raise PermissionDenied
            request.roles = held
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
