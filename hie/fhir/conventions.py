"""Rules every FHIR request follows besides authentication: the purpose of use of reads, and a
per-client rate limit."""

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from hie.exceptions import Forbidden, RateLimited, ValidationFailed
from hie.orgs.scopes import PURPOSE_SYSTEM, purposes_in
from hie.orgs.selectors import BearerGrant


def purpose_of_use(request: HttpRequest, grant: BearerGrant) -> str:
    """The HL7 PurposeOfUse code a read is made under, as IHE IUA and SMART carry it: in the access
    token. The purposes the token carries (its `purpose_of_use=` scopes; a token that names none
    carries every purpose granted to the client) bound the answer. A token with one purpose uses it;
    otherwise the member's default purpose, if the token carries it. The optional X-Purpose-Of-Use
    header (`CODE` or `system|CODE`) narrows to another purpose the token carries: `403` if it
    carries no such purpose."""
    named = purposes_in(grant.scopes)
    # A purpose withdrawn from the client since the token was issued is no longer carried.
    carried = named & grant.purposes if named else set(grant.purposes)
    raw = request.headers.get("X-Purpose-Of-Use", "").strip()
    if raw:
        system, _, code = raw.rpartition("|")
        if system and system != PURPOSE_SYSTEM:
            raise ValidationFailed(f"X-Purpose-Of-Use must be a code of {PURPOSE_SYSTEM}")
        if code not in settings.FHIR_PURPOSES_OF_USE:
            raise ValidationFailed(
                "X-Purpose-Of-Use is not a known purpose; use one of "
                + ", ".join(sorted(settings.FHIR_PURPOSES_OF_USE))
            )
        if code not in carried:
            raise Forbidden(f"the access token does not carry the purpose of use {code}")
        return code
    if len(carried) == 1:
        return next(iter(carried))
    default = grant.client.organization.default_purpose_of_use
    if default and default in carried:
        return default
    if not carried:
        raise Forbidden("the client is granted no purpose of use")
    raise ValidationFailed(
        "this read needs a purpose of use: the member has no default purpose the token carries; ask for a token "
        f"with one purpose_of_use={PURPOSE_SYSTEM}|CODE scope, or send X-Purpose-Of-Use"
    )


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
