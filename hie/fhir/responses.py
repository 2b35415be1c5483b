"""FHIR responses, and the one place domain errors become an OperationOutcome with its HTTP status."""

import json

from django.http import HttpResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

from hie.exceptions import (
    Conflict,
    CustodianFailed,
    CustodianTimeout,
    Forbidden,
    HieError,
    NotAuthenticated,
    PayloadTooLarge,
    PreconditionFailed,
    RateLimited,
    ScopeMissing,
    UnknownDomain,
    UnknownResource,
    UnknownTargetDomain,
    Unprocessable,
    ValidationFailed,
)

FHIR_JSON = "application/fhir+json"

# exception -> (HTTP status, OperationOutcome issue code); the first class that fits wins.
ERROR_STATUS: dict[type[HieError], tuple[int, str]] = {
    UnknownDomain: (400, "code-invalid"),  # PIXm ITI-83: source domain not recognised
    UnknownTargetDomain: (403, "code-invalid"),  # PIXm ITI-83: target domain not recognised
    ValidationFailed: (400, "invalid"),
    NotAuthenticated: (401, "login"),
    ScopeMissing: (403, "forbidden"),
    Forbidden: (403, "forbidden"),
    UnknownResource: (404, "not-found"),
    Conflict: (409, "conflict"),
    PreconditionFailed: (412, "conflict"),
    PayloadTooLarge: (413, "too-long"),
    Unprocessable: (422, "business-rule"),
    RateLimited: (429, "throttled"),
    CustodianFailed: (502, "transient"),
    CustodianTimeout: (504, "timeout"),
}


def status_of(error: HieError) -> tuple[int, str]:
    return next((mapped for kind, mapped in ERROR_STATUS.items() if isinstance(error, kind)), (400, "processing"))


def fhir_response(resource: Resource, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(resource.model_dump_json(exclude_none=True), status=status, content_type=FHIR_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def json_response(resource: dict, status: int = 200) -> HttpResponse:
    """A resource built as plain JSON on a hot path; its shape is checked by the tests."""
    return HttpResponse(json.dumps(resource, separators=(",", ":")), status=status, content_type=FHIR_JSON)


def outcome_response(status: int, code: str, diagnostics: str, severity: str = "error") -> HttpResponse:
    outcome = OperationOutcome.model_validate(
        {"issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}
    )
    return fhir_response(outcome, status=status)


def error_response(error: HieError) -> HttpResponse:
    status, code = status_of(error)
    response = outcome_response(status, code, str(error))
    if isinstance(error, NotAuthenticated):
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif isinstance(error, ScopeMissing):
        response["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
    elif isinstance(error, RateLimited):
        response["Retry-After"] = str(error.retry_after)
    return response
