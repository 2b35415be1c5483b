"""The token endpoint's client authentication: django-oauth-toolkit's shared secrets, and SMART
Backend Services `private_key_jwt` (RFC 7523 client assertions), which the toolkit lacks.

SMART App Launch 2.0, client-confidential-asymmetric: the client posts
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a
`client_assertion` JWT signed (RS384 or ES384) with a key of its registered JWK Set, naming that
key in `kid`, with `iss` and `sub` its client_id, `aud` the token endpoint's URL, `exp` at most
five minutes ahead, and a `jti` never used before. Anything else is `invalid_client`.
"""

import json
import logging
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from jwcrypto.common import JWException
from jwcrypto.jws import JWS
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator

from hie.orgs.keys import KeysUnavailable, client_keys
from hie.orgs.models import ApiClient, UsedClientAssertion

logger = logging.getLogger(__name__)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)


class AssertionRefused(Exception):
    """The client assertion does not authenticate the client; the reason goes to the log only."""


def _claims_unverified(assertion: str) -> tuple[dict, dict, JWS]:
    token = JWS()
    try:
        token.deserialize(assertion)
        header = token.jose_header
        claims = json.loads(token.objects["payload"])
    except (JWException, ValueError, KeyError, TypeError):
        raise AssertionRefused("not a compact JWS") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AssertionRefused("not a JWT")
    return header, claims, token


def _verified(token: JWS, header: dict, client: ApiClient) -> None:
    """Check the signature with the client's key named by `kid`, in the algorithm it names."""
    if header.get("alg") not in ASSERTION_ALGORITHMS:
        raise AssertionRefused("algorithm not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AssertionRefused("no kid")
    if "jku" in header and header["jku"] != client.jwks_uri:
        # Keys come only from what the operator registered, never from a URL the assertion names.
        raise AssertionRefused("jku is not the client's registered JWKS URL")
    try:
        key = client_keys(client.jwks, client.jwks_uri).get_key(kid)
        if key is None and client.jwks_uri:
            key = client_keys(client.jwks, client.jwks_uri, fresh=True).get_key(kid)
    except KeysUnavailable as error:
        raise AssertionRefused(str(error)) from None
    if key is None:
        raise AssertionRefused("unknown kid")
    token.allowed_algs = [header["alg"]]
    try:
        token.verify(key, alg=header["alg"])
    except (JWException, ValueError, TypeError):  # a bad signature, or a key of another type than alg's
        raise AssertionRefused("bad signature") from None


def _instant(claims: dict, name: str) -> datetime:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise AssertionRefused(f"no {name}")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise AssertionRefused(f"{name} is not a time") from None


def authenticate_assertion(assertion: str, *, token_url: str, client_id: str | None) -> ApiClient:
    """The client a client assertion authenticates, its jti recorded as used; AssertionRefused otherwise."""
    header, claims, token = _claims_unverified(assertion)
    subject = claims.get("sub")
    if not isinstance(subject, str) or claims.get("iss") != subject or (client_id and client_id != subject):
        raise AssertionRefused("iss and sub must both be the client_id")
    client = ApiClient.objects.select_related("organization").filter(client_id=subject).first()
    if client is None or not client.is_usable(None):
        raise AssertionRefused("unknown or unusable client")
    _verified(token, header, client)
    audience = claims.get("aud")
    if audience != token_url and not (isinstance(audience, list) and token_url in audience):
        raise AssertionRefused("aud is not the token endpoint")
    now = timezone.now()
    expires = _instant(claims, "exp")
    if expires <= now - CLOCK_SKEW:
        raise AssertionRefused("expired")
    if expires > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise AssertionRefused("exp more than five minutes ahead")
    if "nbf" in claims and _instant(claims, "nbf") > now + CLOCK_SKEW:
        raise AssertionRefused("not valid yet")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise AssertionRefused("no jti")
    _use_once(client, jti, expires)
    return client


def _use_once(client: ApiClient, jti: str, expires: datetime) -> None:
    """Record the jti; the unique constraint makes a replay (even a concurrent one) fail."""
    UsedClientAssertion.objects.filter(expires_at__lt=timezone.now() - CLOCK_SKEW).delete()
    try:
        with transaction.atomic():
            UsedClientAssertion.objects.create(client=client, jti=jti, expires_at=expires)
    except IntegrityError:
        raise AssertionRefused("jti used before") from None


class ApiClientValidator(OAuth2Validator):
    """django-oauth-toolkit's validator, with `private_key_jwt` beside its shared secrets."""

    def authenticate_client(self, request, *args, **kwargs) -> bool:
        assertion_type = getattr(request, "client_assertion_type", None)
        if assertion_type is None and getattr(request, "client_assertion", None) is None:
            return super().authenticate_client(request, *args, **kwargs)
        if assertion_type != JWT_BEARER or not getattr(request, "client_assertion", None):
            return False
        try:
            client = authenticate_assertion(
                request.client_assertion, token_url=request.uri.split("?", 1)[0], client_id=request.client_id
            )
        except AssertionRefused as refusal:
            logger.info("client assertion refused", extra={"reason": str(refusal)})
            return False
        request.client = client
        request.client_id = client.client_id
        return True


class AbsoluteUriOAuthLibCore(OAuthLibCore):
    """Hands oauthlib the request's absolute URL (scheme and host as Django sees them, behind a
    TLS proxy too): a client assertion's `aud` is checked against the token endpoint's URL."""

    def _get_escaped_full_path(self, request) -> str:
        return request.build_absolute_uri(super()._get_escaped_full_path(request))
