"""Domain exceptions. Services raise them; each interface maps them to its own error form
(FHIR OperationOutcome in hie/fhir/errors.py, HL7 ACK codes in hie/hl7v2, form errors in the console)."""


class HieError(Exception):
    """Base of the errors a caller can be told about. The message must not contain PHI."""


class ValidationFailed(HieError):
    """The input is malformed or breaks a rule."""


class NotAuthenticated(HieError):
    """No valid credentials came with the request."""


class ScopeMissing(HieError):
    """The client is authenticated but was not granted the scope this needs."""


class PayloadTooLarge(HieError):
    """The request's body is larger than the node accepts (FHIR answers 413)."""


class Forbidden(HieError):
    """The caller may not do this (for example, write in another member's namespace)."""


class UnknownResource(HieError):
    """The thing asked for does not exist, or the caller may not know that it does."""


class Unprocessable(HieError):
    """The input is well-formed but breaks a business rule (FHIR answers 422)."""


class Conflict(HieError):
    """The request conflicts with what is stored (for example, creating what exists already)."""


class PreconditionFailed(HieError):
    """The caller's version precondition (If-Match) does not hold any more."""


class UnknownDomain(ValidationFailed):
    """An identifier system (assigning authority) that no member uses."""


class UnknownTargetDomain(Forbidden):
    """PIXm ITI-83: a target system the node does not know is answered 403."""


class RateLimited(HieError):
    """The client sent more requests than its allowance; it may retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CustodianFailed(HieError):
    """The member holding a document did not give it (an error, or content that fails its size or hash)."""


class CustodianTimeout(HieError):
    """The member holding a document did not answer in time."""
