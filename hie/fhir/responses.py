"""FHIR responses, and the one place domain errors become an OperationOutcome with its HTTP status."""

from django.http import HttpResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

from hie.exceptions import Forbidden, HieError, NotAuthenticated, ScopeMissing, UnknownResource, ValidationFailed

FHIR_JSON = "application/fhir+json"

# exception -> (HTTP status, OperationOutcome issue code)
ERROR_STATUS: dict[type[HieError], tuple[int, str]] = {
    ValidationFailed: (400, "invalid"),
    NotAuthenticated: (401, "login"),
    ScopeMissing: (403, "forbidden"),
    Forbidden: (403, "forbidden"),
    UnknownResource: (404, "not-found"),
}


def fhir_response(resource: Resource, status: int = 200) -> HttpResponse:
    return HttpResponse(resource.model_dump_json(exclude_none=True), status=status, content_type=FHIR_JSON)


def outcome_response(status: int, code: str, diagnostics: str) -> HttpResponse:
    outcome = OperationOutcome.model_validate(
        {"issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]}
    )
    return fhir_response(outcome, status=status)


def error_response(error: HieError) -> HttpResponse:
    status, code = next(
        (mapped for kind, mapped in ERROR_STATUS.items() if isinstance(error, kind)), (400, "processing")
    )
    response = outcome_response(status, code, str(error))
    if isinstance(error, NotAuthenticated):
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif isinstance(error, ScopeMissing):
        response["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
    return response
