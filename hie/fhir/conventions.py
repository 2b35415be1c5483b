"""Rules every FHIR request follows besides authentication: a declared purpose of use on reads,
and a per-client rate limit."""

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from hie.exceptions import RateLimited, ValidationFailed

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def purpose_of_use(request: HttpRequest) -> str:
    """The HL7 PurposeOfUse code of the X-Purpose-Of-Use header (`CODE` or `system|CODE`)."""
    raw = request.headers.get("X-Purpose-Of-Use", "").strip()
    if not raw:
        raise ValidationFailed(
            "the X-Purpose-Of-Use header is required on reads (an HL7 PurposeOfUse code, e.g. TREAT)"
        )
    system, _, code = raw.rpartition("|")
    if system and system != PURPOSE_SYSTEM:
        raise ValidationFailed(f"X-Purpose-Of-Use must be a code of {PURPOSE_SYSTEM}")
    if code not in settings.FHIR_PURPOSES_OF_USE:
        raise ValidationFailed(
            "X-Purpose-Of-Use is not a known purpose; use one of " + ", ".join(sorted(settings.FHIR_PURPOSES_OF_USE))
        )
    return code


def check_rate(client_id: str) -> None:
    """Fixed-window counter per client, shared by every web process through the cache."""
    limit, window = settings.FHIR_RATE_LIMIT, settings.FHIR_RATE_WINDOW
    if not limit:
        return
    now = time.time()
    slot = int(now // window)
    key = f"fhir-rate:{client_id}:{slot}"
    cache.add(key, 0, timeout=window + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # the counter expired between add and incr
        cache.set(key, 1, timeout=window + 5)
        count = 1
    if count > limit:
        retry_after = max(1, int((slot + 1) * window - now) + 1)
        raise RateLimited(f"more than {limit} requests in {window} seconds; retry later", retry_after=retry_after)
