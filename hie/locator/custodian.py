"""Calling a custodian (a member's FHIR server) for the content of a document it holds (ITI-68 through the node).

The node authenticates with its own client credentials at that member (CustodianAccess), reads
at most the registered size, and checks size and SHA-1 before passing anything on.
"""

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from hie.exceptions import CustodianFailed, CustodianTimeout
from hie.locator.models import CustodianAccess, DocumentEntry

logger = logging.getLogger(__name__)
CHUNK = 64 * 1024


@contextmanager
def _calling(what: str) -> Iterator[None]:
    """Network failures of a call to a custodian as the node's errors (504 timeout, 502 otherwise)."""
    try:
        yield
    except requests.Timeout:
        raise CustodianTimeout(f"{what} did not answer in time") from None
    except requests.RequestException:
        raise CustodianFailed(f"{what} could not be reached") from None


def _token(access: CustodianAccess) -> str:
    key = f"custodian-token:{access.organization_id}:{access.client_id}"
    token = cache.get(key)
    if token:
        return token
    with _calling("the custodian's token endpoint"):
        answer = requests.post(
            access.token_url,
            data={"grant_type": "client_credentials", **({"scope": access.scope} if access.scope else {})},
            auth=(access.client_id, access.client_secret),
            timeout=settings.CUSTODIAN_TIMEOUT_SECONDS,
        )
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
    with (
        _calling("the custodian"),
        requests.get(entry.url, headers=headers, stream=True, timeout=settings.CUSTODIAN_TIMEOUT_SECONDS) as answer,
    ):
        if answer.status_code != 200:
            logger.warning("custodian answered with an error", extra={"custodian": entry.custodian_id,
                                                                      "status": answer.status_code})  # fmt: skip
            raise CustodianFailed(f"the custodian answered {answer.status_code}")
        content = bytearray()
        for chunk in answer.iter_content(CHUNK):
            content.extend(chunk)
            if len(content) > limit:
                raise CustodianFailed("the custodian sent more than the registered size")
    if entry.size is not None and len(content) != entry.size:
        raise CustodianFailed("the custodian's content does not have the registered size")
    if entry.sha1 and hashlib.sha1(content, usedforsecurity=False).hexdigest() != entry.sha1:
        raise CustodianFailed("the custodian's content does not match the registered hash")
    return bytes(content)


def _get(url: str, access: CustodianAccess | None, **kwargs: object) -> requests.Response:
    headers = {"Accept": "application/fhir+json"}
    if access is not None:
        headers["Authorization"] = f"Bearer {_token(access)}"
    with _calling("the custodian"):
        answer = requests.get(url, headers=headers, timeout=settings.CUSTODIAN_TIMEOUT_SECONDS, **kwargs)
    if answer.status_code != 200:
        raise CustodianFailed(f"the custodian answered {answer.status_code}")
    return answer


def list_documents(custodian: object, identifier_system: str, local_id: str) -> list[dict]:
    """The current DocumentReferences the custodian lists for one of its patients (ITI-67 at the custodian),
    following `next` links up to CUSTODIAN_MAX_PAGES pages."""
    if not custodian.fhir_endpoint:
        raise CustodianFailed("the member has no FHIR endpoint registered")
    access = CustodianAccess.objects.filter(organization=custodian).first()
    url = f"{custodian.fhir_endpoint.rstrip('/')}/DocumentReference"
    params = {"patient.identifier": f"{identifier_system}|{local_id}", "status": "current"}
    references = []
    for _ in range(settings.CUSTODIAN_MAX_PAGES):
        try:
            content = json.loads(_get(url, access, params=params).content)
            Bundle.model_validate(content)  # the whole answer, its resources included, is valid FHIR
        except (ValueError, ValidationError):
            raise CustodianFailed("the custodian's answer is not a FHIR Bundle") from None
        references += [
            e["resource"]
            for e in content.get("entry") or []
            if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "DocumentReference"
        ]
        following = next((link["url"] for link in content.get("link") or [] if link.get("relation") == "next"), None)
        if not following:
            break
        url, params = following, None
    return references


def prefetch_content(entry: DocumentEntry) -> None:
    """Fetch and keep a checked copy of by-reference content, so retrieval need not call the custodian."""
    if entry.prefetched or not entry.by_reference:
        return
    content = fetch_content(entry)
    entry.prefetched.save(f"{entry.pk}", ContentFile(content), save=False)
    entry.save(update_fields=["prefetched"])
