"""Calling a custodian (a member's FHIR server) for the content of a document it holds (ITI-68 through the node).

The node authenticates with its own client credentials at that member (CustodianAccess), reads
at most the registered size, and checks size and SHA-1 before passing anything on.
"""

import hashlib
import logging

import requests
from django.conf import settings
from django.core.cache import cache

from hie.exceptions import CustodianFailed, CustodianTimeout
from hie.locator.models import CustodianAccess, DocumentEntry

logger = logging.getLogger(__name__)
CHUNK = 64 * 1024


def _token(access: CustodianAccess) -> str:
    key = f"custodian-token:{access.organization_id}:{access.client_id}"
    token = cache.get(key)
    if token:
        return token
    try:
        answer = requests.post(
            access.token_url,
            data={"grant_type": "client_credentials", **({"scope": access.scope} if access.scope else {})},
            auth=(access.client_id, access.client_secret),
            timeout=settings.CUSTODIAN_TIMEOUT_SECONDS,
        )
    except requests.Timeout:
        raise CustodianTimeout("the custodian's token endpoint did not answer in time") from None
    except requests.RequestException:
        raise CustodianFailed("the custodian's token endpoint could not be reached") from None
    if answer.status_code != 200:
        raise CustodianFailed(f"the custodian refused the node's credentials ({answer.status_code})")
    body = answer.json()
    token = body.get("access_token", "")
    # Kept a little shorter than the custodian says, so a token is never used at its last second.
    cache.set(key, token, timeout=max(int(body.get("expires_in", 300)) - 30, 1))
    return token


def fetch_content(entry: DocumentEntry) -> bytes:
    """The document's bytes from its custodian, checked against the registered size and hash."""
    headers = {"Accept": entry.content_type}
    access = CustodianAccess.objects.filter(organization_id=entry.custodian_id).first()
    if access is not None:
        headers["Authorization"] = f"Bearer {_token(access)}"
    limit = entry.size if entry.size is not None else settings.CUSTODIAN_MAX_DOCUMENT_BYTES
    try:
        with requests.get(
            entry.url, headers=headers, stream=True, timeout=settings.CUSTODIAN_TIMEOUT_SECONDS
        ) as answer:
            if answer.status_code != 200:
                logger.warning("custodian answered with an error", extra={"custodian": entry.custodian_id,
                                                                          "status": answer.status_code})  # fmt: skip
                raise CustodianFailed(f"the custodian answered {answer.status_code}")
            content = bytearray()
            for chunk in answer.iter_content(CHUNK):
                content.extend(chunk)
                if len(content) > limit:
                    raise CustodianFailed("the custodian sent more than the registered size")
    except requests.Timeout:
        raise CustodianTimeout("the custodian did not answer in time") from None
    except requests.RequestException:
        raise CustodianFailed("the custodian could not be reached") from None
    if entry.size is not None and len(content) != entry.size:
        raise CustodianFailed("the custodian's content does not have the registered size")
    if entry.sha1 and hashlib.sha1(content, usedforsecurity=False).hexdigest() != entry.sha1:
        raise CustodianFailed("the custodian's content does not match the registered hash")
    return bytes(content)
