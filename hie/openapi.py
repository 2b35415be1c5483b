"""The OpenAPI description of the node's non-FHIR endpoints (served at /api/schema/).

The OAuth2 endpoints are django-oauth-toolkit views, not DRF views, so drf-spectacular cannot
see them; this hook adds them as RFC 6749 client-credentials endpoints.
"""

TOKEN_REQUEST = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "scope": {"type": "string", "description": "space-separated SMART scopes; default: all granted"},
        "client_assertion_type": {
            "type": "string",
            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
            "description": "SMART private_key_jwt, instead of the client secret",
        },
        "client_assertion": {"type": "string", "description": "the signed JWT (RS384 or ES384) of RFC 7523"},
    },
}
TOKEN_RESPONSE = {
    "type": "object",
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer"},
        "scope": {"type": "string"},
    },
}
OAUTH_ERROR = {"type": "object", "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}}


def add_oauth_endpoints(result: dict, generator: object, request: object, public: bool) -> dict:
    form = "application/x-www-form-urlencoded"
    result.setdefault("components", {}).setdefault("securitySchemes", {})["clientBasic"] = {
        "type": "http",
        "scheme": "basic",
        "description": "the member's client id and secret",
    }
    result["paths"]["/oauth/token"] = {
        "post": {
            "operationId": "oauth_token",
            "summary": "Issue an access token (OAuth2 client credentials)",
            "tags": ["oauth"],
            "security": [{"clientBasic": []}, {}],  # {}: a client assertion in the body instead
            "requestBody": {"required": True, "content": {form: {"schema": TOKEN_REQUEST}}},
            "responses": {
                "200": {"description": "a bearer token", "content": {"application/json": {"schema": TOKEN_RESPONSE}}},
                "400": {
                    "description": "bad request or scope",
                    "content": {"application/json": {"schema": OAUTH_ERROR}},
                },
                "401": {
                    "description": "unknown or revoked client",
                    "content": {"application/json": {"schema": OAUTH_ERROR}},
                },
            },
        }
    }
    result["paths"]["/oauth/revoke_token"] = {
        "post": {
            "operationId": "oauth_revoke_token",
            "summary": "Revoke an access token (RFC 7009)",
            "tags": ["oauth"],
            "security": [{"clientBasic": []}],
            "requestBody": {
                "required": True,
                "content": {
                    form: {
                        "schema": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}
                    }
                },
            },
            "responses": {"200": {"description": "revoked (or already unknown)"}},
        }
    }
    return result
