"""Staff console views."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hie.console.roles import ALL_ROLES, role_required
from hie.orgs.selectors import member_overview


@role_required(*ALL_ROLES)
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "console/home.html", {"members": member_overview(), "roles": sorted(request.roles)})
