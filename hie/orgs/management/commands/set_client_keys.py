"""manage.py set_client_keys: register (or replace) the public keys an API client signs its
client assertions with (SMART Backend Services private_key_jwt)."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hie.exceptions import ValidationFailed
from hie.orgs.management.keys import add_key_arguments, read_jwks
from hie.orgs.models import ApiClient
from hie.orgs.services import register_client_keys


class Command(BaseCommand):
    help = "Register an API client's public JWK Set (--jwks FILE) or JWKS URL (--jwks-uri URL); neither removes them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_id")
        add_key_arguments(parser)

    def handle(self, *args: object, **options: object) -> None:
        client = ApiClient.objects.filter(client_id=options["client_id"]).first()
        if client is None:
            raise CommandError("no API client has that client_id")
        try:
            register_client_keys(client=client, jwks=read_jwks(options["jwks"]), jwks_uri=options["jwks_uri"])
        except ValidationFailed as exc:
            raise CommandError(str(exc)) from exc
        kids = [key["kid"] for key in (client.jwks or {}).get("keys", [])]
        self.stdout.write(json.dumps({"client_id": client.client_id, "kids": kids, "jwks_uri": client.jwks_uri}))
