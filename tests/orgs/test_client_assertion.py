"""SMART Backend Services private_key_jwt: a client signs an assertion with a key it generated and
gets a token; every flawed assertion is refused with invalid_client."""

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.management import call_command
from jwcrypto import jwk, jwt

from hie.orgs.models import UsedClientAssertion
from hie.orgs.services import register_client_keys

TOKEN_URL = "http://testserver/oauth/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def rsa_key(kid: str = "rsa-1") -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=2048, kid=kid)


def ec_key(kid: str = "ec-1") -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-384", kid=kid)


def public_jwks(*keys: jwk.JWK) -> dict:
    return {"keys": [json.loads(key.export_public()) for key in keys]}


def assertion(client_id: str, key: jwk.JWK, *, alg: str = "RS384", kid: str | None = None, **claims) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "jti": uuid.uuid4().hex}
    body.update(claims)
    header = {"alg": alg, "typ": "JWT", "kid": kid or key.get("kid") or "none"}
    token = jwt.JWT(header=header, claims={k: v for k, v in body.items() if v is not None})
    token.make_signed_token(key)
    return token.serialize()


def ask(client, signed: str, **extra) -> object:
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER, "client_assertion": signed}
    return client.post("/oauth/token", {**form, **extra})


@pytest.fixture
def keyed_member(make_member):
    key = rsa_key()
    issued = make_member(scopes=["system/Patient.read", "system/DocumentReference.read"])
    register_client_keys(client=issued.client, jwks=public_jwks(key, ec_key()))
    return issued.client, key


def test_a_signed_assertion_gets_a_token_that_reads(keyed_member, client):
    api_client, key = keyed_member
    response = ask(client, assertion(api_client.client_id, key), scope="system/Patient.rs system/DocumentReference.r")
    assert response.status_code == 200, response.content
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == {"system/Patient.rs", "system/DocumentReference.r"}
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token['access_token']}"}
    assert client.get("/fhir/Patient?family=nobody", **bearer).status_code == 200
    # DocumentReference.r reads one document but does not search
    assert client.get("/fhir/DocumentReference?patient=Patient/E1&status=current", **bearer).status_code == 403


def test_es384_assertion_is_accepted(make_member, client):
    key = ec_key()
    issued = make_member()
    register_client_keys(client=issued.client, jwks=public_jwks(key))
    assert ask(client, assertion(issued.client.client_id, key, alg="ES384")).status_code == 200


@pytest.mark.parametrize(
    "flaw",
    ["wrong aud", "expired", "too long", "unknown kid", "wrong alg", "hs256", "other iss", "no jti", "foreign jku",
     "other signer"],
)  # fmt: skip
def test_flawed_assertions_are_invalid_client(keyed_member, client, flaw):
    api_client, key = keyed_member
    cid, now = api_client.client_id, int(time.time())
    signed = {
        "wrong aud": lambda: assertion(cid, key, aud="http://testserver/fhir"),
        "expired": lambda: assertion(cid, key, exp=now - 120),
        "too long": lambda: assertion(cid, key, exp=now + 3600),
        "unknown kid": lambda: assertion(cid, rsa_key("not-registered")),
        "wrong alg": lambda: assertion(cid, key, alg="RS256"),
        "hs256": lambda: assertion(cid, jwk.JWK.generate(kty="oct", size=256, kid="rsa-1"), alg="HS256"),
        "other iss": lambda: assertion(cid, key, iss="someone-else"),
        "no jti": lambda: assertion(cid, key, jti=None),
        "other signer": lambda: assertion(cid, rsa_key("rsa-1")),  # right kid, another private key
        "foreign jku": lambda: _with_jku(cid, key),
    }[flaw]()
    response = ask(client, signed)
    assert response.status_code == 401, (flaw, response.content)
    assert response.json()["error"] == "invalid_client"


def _with_jku(client_id: str, key: jwk.JWK) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": uuid.uuid4().hex}
    token = jwt.JWT(header={"alg": "RS384", "kid": "rsa-1", "jku": "https://evil.example/jwks"}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


def test_garbage_assertions_are_invalid_client_not_errors(keyed_member, client):
    api_client, key = keyed_member
    for signed in ("not-a-jwt", "a.b.c", "e30.e30.", assertion(api_client.client_id, key, exp=10**20),
                   assertion(api_client.client_id, key, aud=["http://other.example/token"]),
                   assertion(api_client.client_id, ec_key("rsa-1"), alg="ES384")):  # fmt: skip
        response = ask(client, signed)
        assert response.status_code == 401, (signed, response.content)
        assert response.json()["error"] == "invalid_client"


def test_a_replayed_assertion_is_refused(keyed_member, client):
    api_client, key = keyed_member
    signed = assertion(api_client.client_id, key)
    assert ask(client, signed).status_code == 200
    replay = ask(client, signed)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert UsedClientAssertion.objects.filter(client=api_client).count() == 1


def test_client_without_keys_and_bad_assertion_type_are_refused(make_member, client):
    issued = make_member()
    assert ask(client, assertion(issued.client.client_id, rsa_key())).status_code == 401
    response = client.post("/oauth/token", {"grant_type": "client_credentials", "client_assertion": "x.y.z",
                                            "client_assertion_type": "urn:example:saml"})  # fmt: skip
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


class _JwksHandler(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_server():
    server = HTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_keys_are_fetched_from_the_registered_jwks_url(make_member, client, jwks_server):
    key = rsa_key()
    _JwksHandler.body = json.dumps(public_jwks(key)).encode()
    issued = make_member()
    url = f"http://127.0.0.1:{jwks_server.server_port}/jwks.json"
    register_client_keys(client=issued.client, jwks_uri=url)
    assert ask(client, assertion(issued.client.client_id, key)).status_code == 200
    rotated = rsa_key("rsa-2")  # a key rotated in is found by fetching the set again
    _JwksHandler.body = json.dumps(public_jwks(key, rotated)).encode()
    assert ask(client, assertion(issued.client.client_id, rotated)).status_code == 200


def test_a_jwks_url_that_does_not_answer_times_out(make_member, client, settings):
    settings.JWKS_FETCH_TIMEOUT_SECONDS = 0.5
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        issued = make_member()
        register_client_keys(client=issued.client, jwks_uri=f"http://127.0.0.1:{silent.getsockname()[1]}/jwks")
        started = time.monotonic()
        response = ask(client, assertion(issued.client.client_id, rsa_key()))
        assert response.status_code == 401
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_registering_keys_refuses_private_and_symmetric_keys(make_member, tmp_path, capsys):
    issued = make_member()
    key = rsa_key()
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [json.loads(key.export_private())]}))
    symmetric = tmp_path / "oct.json"
    symmetric.write_text(json.dumps({"keys": [json.loads(jwk.JWK.generate(kty="oct", size=256, kid="s").export())]}))
    for path in (private, symmetric):
        with pytest.raises(Exception, match=r"private key|RSA and EC"):
            call_command("set_client_keys", issued.client.client_id, "--jwks", str(path))
    public = tmp_path / "public.json"
    public.write_text(json.dumps(public_jwks(key)))
    call_command("set_client_keys", issued.client.client_id, "--jwks", str(public))
    assert json.loads(capsys.readouterr().out)["kids"] == ["rsa-1"]
    with pytest.raises(Exception, match="https"):
        call_command("set_client_keys", issued.client.client_id, "--jwks-uri", "ftp://keys.example/jwks")


def test_smart_configuration_describes_backend_services(client, db):
    for path in ("/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        document = client.get(path).json()
        assert document["token_endpoint"] == TOKEN_URL
        assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
        assert {"RS384", "ES384"} <= set(document["token_endpoint_auth_signing_alg_values_supported"])
        assert document["grant_types_supported"] == ["client_credentials"]
        assert {"system/Patient.rs", "system/Patient.read"} <= set(document["scopes_supported"])
        assert {"client-confidential-asymmetric", "permission-v2"} <= set(document["capabilities"])
