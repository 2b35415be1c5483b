"""Audit of access tokens issued by the OAuth2 token endpoint."""

from hie.audit.models import Action
from hie.audit.services import Actor, record_event


def audit_token_issued(sender: object, request: object, token: object, **kwargs: object) -> None:
    client = token.application
    record_event(
        actor=Actor(
            organization_id=client.organization_id,
            api_client_id=client.pk,
            source_address=request.META.get("REMOTE_ADDR", ""),
        ),
        action=Action.EXECUTE,
        event_type="token-issued",
        detail={"scopes": token.scope.split(), "expires": token.expires.isoformat()},
    )
