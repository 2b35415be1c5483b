"""What a FHIR request's body may be: at most FHIR_MAX_BODY_BYTES, read once after the caller is
authenticated, and JSON nested no deeper than the resources the node reads ever are."""

import json
from io import BytesIO

from django.conf import settings
from django.http import HttpRequest

from hie.exceptions import PayloadTooLarge, ValidationFailed

# The deepest FHIR JSON the node reads is a few dozen levels (a Bundle entry's resource's
# extension's value); fhir.resources' validation recurses past Python's stack at a few hundred.
MAX_JSON_DEPTH = 100


def read_body(request: HttpRequest) -> None:
    """Read the body of an authenticated FHIR request under FHIR_MAX_BODY_BYTES; `request.body`
    answers it from then on.

    Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) stays the limit of every other endpoint, those
    anyone may call (the token endpoint, the console's login); a member's documents by value need
    more, and only a caller with a valid token makes the node read that much.
    """
    limit = settings.FHIR_MAX_BODY_BYTES
    # A Content-Length that is not a number never gets here: the HTTP server refuses it.
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
        raise PayloadTooLarge(too_large(limit))
    body = request.read(limit + 1)  # one byte past the limit tells an understated length
    if len(body) > limit:
        raise PayloadTooLarge(too_large(limit))
    # What HttpRequest.body does once it has read the stream, with the FHIR limit instead of Django's.
    request._body = body
    request._stream = BytesIO(body)


def too_large(limit: int) -> str:
    return (
        f"the body is larger than the {limit} bytes this node accepts (FHIR_MAX_BODY_BYTES); register "
        "larger documents by reference (ITI-65 content.attachment.url under the member's FHIR endpoint)"
    )


def parse_json(body: bytes | str) -> object:
    """The body's JSON; not JSON, or nested deeper than MAX_JSON_DEPTH, is a 400."""
    try:
        content = json.loads(body or b"null")
    except RecursionError:
        raise ValidationFailed(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationFailed(f"the body is not JSON ({type(error).__name__})") from None
    if _depth(content) > MAX_JSON_DEPTH:
        raise ValidationFailed(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    return content


def _depth(content: object) -> int:
    """How deeply arrays and objects nest, walked without recursion (the walk must not overflow either)."""
    deepest, waiting = 0, [(content, 1)]
    while waiting:
        value, depth = waiting.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = value.values() if isinstance(value, dict) else value
            waiting.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
