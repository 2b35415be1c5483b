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


class Forbidden(HieError):
    """The caller may not do this (for example, write in another member's namespace)."""


class UnknownResource(HieError):
    """The thing asked for does not exist, or the caller may not know that it does."""
