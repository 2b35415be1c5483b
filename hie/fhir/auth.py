"""Bearer-token authentication for the FHIR API, with SMART backend-services scopes."""

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.oauth2_backends import get_oauthlib_core

from hie.exceptions import HieError, NotAuthenticated, ScopeMissing
from hie.fhir.responses import error_response
from hie.orgs.models import ApiClient


def authenticate_client(request: HttpRequest, scope: str) -> ApiClient:
    """The client behind the request's bearer token, which must carry `scope`.

    No or a bad, expired or revoked token is 401; a good token without the scope is 403.
    """
    valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=[])
    if not valid:
        raise NotAuthenticated("a valid bearer access token is required")
    token = oauth_request.access_token
    if not token.allow_scopes([scope]):
        raise ScopeMissing(f"this request needs the scope {scope}")
    return token.application


def fhir_view(*, scope: str | None) -> Callable:
    """Make a view a FHIR endpoint: authenticate when it needs a scope, answer errors as OperationOutcome."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            try:
                if scope is not None:
                    client = authenticate_client(request, scope)
                    request.api_client = client
                    request.api_client_id = client.client_id
                return view(request, *args, **kwargs)
            except HieError as error:
                return error_response(error)

        return wrapped

    return decorator
