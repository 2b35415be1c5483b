"""API clients' public keys (JWK Sets): checked when registered, fetched from a registered URL.

SMART App Launch 2.0, client-confidential-asymmetric: a client registers its public keys as a
JWK Set or as the URL of one; the node verifies client assertions with them. A JWKS URL is the
one the operator registered, never one an assertion names, fetched without redirects, with a
timeout and a size limit, over https (plain http only where JWKS_ALLOW_HTTP allows it, for
development), and kept for JWKS_CACHE_SECONDS.
"""

import json
import logging

import requests
from django.conf import settings
from django.core.cache import cache
from jwcrypto.common import JWException
from jwcrypto.jwk import JWKSet

from hie.exceptions import ValidationFailed

logger = logging.getLogger(__name__)

ASSERTION_KEY_TYPES = {"RSA", "EC"}


class KeysUnavailable(Exception):
    """The client's JWK Set could not be had (not registered, unreachable, or not a JWK Set)."""


def check_jwks(jwks: object) -> dict:
    """A JWK Set fit to verify assertions with: public RSA or EC keys, each with a kid."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValidationFailed('a JWK Set is a JSON object with a non-empty "keys" list')
    for i, key in enumerate(jwks["keys"]):
        if not isinstance(key, dict) or key.get("kty") not in ASSERTION_KEY_TYPES:
            raise ValidationFailed(f"keys[{i}]: only RSA and EC public keys are accepted")
        if "d" in key:
            raise ValidationFailed(f"keys[{i}] is a private key: register the public key only")
        if not key.get("kid"):
            raise ValidationFailed(f"keys[{i}] needs a kid (SMART client assertions name their key)")
    try:
        JWKSet.from_json(json.dumps(jwks))
    except (JWException, ValueError, TypeError) as error:
        raise ValidationFailed(f"not a valid JWK Set: {error}") from None
    return jwks


def check_jwks_uri(uri: str) -> str:
    if uri.startswith("https://") or (settings.JWKS_ALLOW_HTTP and uri.startswith("http://")):
        return uri
    raise ValidationFailed("a JWKS URL must be https")


def fetch_jwks(uri: str, *, fresh: bool = False) -> JWKSet:
    """The JWK Set at a registered URL, from the cache unless `fresh` (a kid not found there may
    be a key the client has just rotated in)."""
    key = f"jwks:{uri}"
    text = None if fresh else cache.get(key)
    if text is None:
        try:
            with requests.get(uri, timeout=settings.JWKS_FETCH_TIMEOUT_SECONDS, allow_redirects=False,
                              stream=True, headers={"Accept": "application/json"}) as response:  # fmt: skip
                response.raise_for_status()
                body = response.raw.read(settings.JWKS_MAX_BYTES + 1, decode_content=True)
        except requests.RequestException as error:
            logger.warning("client JWKS fetch failed", extra={"error": type(error).__name__})
            raise KeysUnavailable("the client's JWKS URL did not answer") from None
        if len(body) > settings.JWKS_MAX_BYTES:
            raise KeysUnavailable("the client's JWK Set is too large")
        try:
            text = json.dumps(check_jwks(json.loads(body)))
        except (ValueError, ValidationFailed):
            raise KeysUnavailable("the client's JWKS URL does not serve a JWK Set") from None
        cache.set(key, text, timeout=settings.JWKS_CACHE_SECONDS)
    return JWKSet.from_json(text)


def client_keys(jwks: dict | None, jwks_uri: str, *, fresh: bool = False) -> JWKSet:
    if jwks:
        return JWKSet.from_json(json.dumps(jwks))
    if jwks_uri:
        return fetch_jwks(jwks_uri, fresh=fresh)
    raise KeysUnavailable("the client has no registered keys")
