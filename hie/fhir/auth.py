"""The FHIR view decorator: bearer-token authentication with SMART backend-services scopes,
the API's conventions, errors as OperationOutcome, and an audit event for every refusal."""

import hashlib
import logging
from collections.abc import Callable
from contextlib import nullcontext
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import get_access_token_model

from hie.audit.models import Action, Outcome
from hie.audit.services import Actor, record_event, written_together
from hie.exceptions import HieError, NotAuthenticated, ScopeMissing
from hie.fhir.body import read_body
from hie.fhir.conventions import check_rate, purpose_of_use
from hie.fhir.responses import error_response, outcome_response, status_of
from hie.orgs.scopes import permits
from hie.orgs.selectors import BearerGrant, bearer_grant

logger = logging.getLogger(__name__)
AccessToken = get_access_token_model()

READ_METHODS = {"GET", "HEAD"}
METHOD_ACTIONS = {"GET": Action.READ, "HEAD": Action.READ, "POST": Action.CREATE, "PUT": Action.UPDATE,
                  "DELETE": Action.DELETE}  # fmt: skip


WRITE_INTERACTIONS = {"POST": "c", "PUT": "u", "DELETE": "d"}


def interaction_of(request: HttpRequest, scope: str, instance: bool) -> str:
    """The SMART v2 permission a request needs under a v1 scope: a `read` scope reads one
    resource (`r`, an instance URL) or searches (`s`, a type or operation URL); a `write` scope
    creates (POST), updates (PUT; `cu` on a type URL, a conditional update that may create) or
    deletes (DELETE)."""
    if scope.endswith(".read"):
        return "r" if instance else "s"
    letters = WRITE_INTERACTIONS.get(request.method, "")
    return "cu" if letters == "u" and not instance else letters


def authenticate_client(request: HttpRequest, scope: str, interaction: str) -> BearerGrant:
    """The grant of the request's bearer token, which must carry `scope` (the SMART v1 scope) or
    v2 scopes of its resource that permit `interaction`.

    No or a bad, expired or revoked token is 401; a good token without the scope is 403.
    The checks are django-oauth-toolkit's (token looked up by its SHA-256 checksum, as stored
    at rest; expiry; scopes; audience of resource-bound tokens; the client's is_usable rule),
    made in one query with the client and its organization, since every FHIR request pays them.
    """
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise NotAuthenticated("a valid bearer access token is required")
    checksum = hashlib.sha256(raw.strip().encode()).hexdigest()
    grant = bearer_grant(checksum)
    if grant is None or not grant.unexpired or not grant.usable:
        raise NotAuthenticated("a valid bearer access token is required")
    if grant.resource_bound:
        token = AccessToken.objects.get(token_checksum=checksum)
        if not token.allows_audience(request.build_absolute_uri(request.path)):
            raise NotAuthenticated("the access token is not valid for this resource")
    if not permits(grant.scopes, scope, interaction):
        resource = scope.rsplit(".", 1)[0]
        raise ScopeMissing(f"this request needs the scope {scope} (or {resource}.{interaction})")
    return grant


def fhir_view(
    *, scope: str | dict[str, str] | None, reads: set[str] = READ_METHODS, read_only: set[str] = READ_METHODS
) -> Callable:
    """Make a view a FHIR endpoint.

    `scope` is the SMART v1 scope the view needs, or one per HTTP method (a method not listed is
    answered 405); v2 scopes of the same resource serve too (interaction_of). Requests with a
    method in `reads` have a purpose of use (conventions.purpose_of_use), which the view finds in
    `request.purpose_of_use`. Requests with a method in `read_only` change
    nothing but the audit trail: their audit events (consent decisions, the read, a refusal)
    are appended together when the request ends.
    """
    scopes = scope if isinstance(scope, dict) else None

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        event_type = view.__name__.replace("_", "-")

        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            needed = scopes.get(request.method) if scopes is not None else scope
            if scopes is not None and needed is None:
                response = outcome_response(405, "not-supported", f"{request.method} is not supported here")
                response["Allow"] = ", ".join(scopes)
                return response
            request.purpose_of_use = ""
            try:
                with written_together() if request.method in read_only else nullcontext():
                    try:
                        if needed is not None:
                            grant = authenticate_client(request, needed, interaction_of(request, needed, bool(kwargs)))
                            request.access_grant = grant
                            request.api_client = grant.client
                            request.api_client_id = grant.client.client_id
                            check_rate(grant.client.client_id)
                            read_body(request)
                            if request.method in reads:
                                request.purpose_of_use = purpose_of_use(request, grant)
                        return view(request, *args, **kwargs)
                    except HieError as error:
                        _audit_refusal(request, event_type, error)
                        return error_response(error)
            except Exception:
                logger.exception("FHIR request failed", extra={"event_type": event_type})
                return outcome_response(500, "exception", "the node could not process the request")

        return wrapped

    return decorator


def _audit_refusal(request: HttpRequest, event_type: str, error: HieError) -> None:
    status, code = status_of(error)
    record_event(
        actor=Actor.from_request(request),
        action=METHOD_ACTIONS.get(request.method, Action.EXECUTE),
        event_type=event_type,
        purpose_of_use=request.purpose_of_use,
        outcome=Outcome.MINOR_FAILURE if status < 500 else Outcome.SERIOUS_FAILURE,
        detail={"status": status, "code": code},
    )
