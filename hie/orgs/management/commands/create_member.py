"""manage.py create_member: add a member organization and its API client."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hie.exceptions import ValidationFailed
from hie.orgs.management.commands.hl7_sender import add_sender_arguments
from hie.orgs.services import create_member


class Command(BaseCommand):
    help = "Create a member organization and its OAuth2 client; prints the client secret once, as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--identifier-system",
            action="append",
            required=True,
            dest="identifier_systems",
            help="URI or urn:oid: the organization assigns patient identifiers under (repeatable)",
        )
        parser.add_argument("--facility", default="", help="HL7 v2 sending facility (MSH-4)")
        parser.add_argument("--endpoint", default="", help="FHIR base URL of the organization")
        add_sender_arguments(parser)
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=sorted(settings.FHIR_SCOPES),
            help="SMART backend-services scopes granted to the client (default: all)",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            issued = create_member(
                name=options["name"],
                identifier_systems=options["identifier_systems"],
                scopes=options["scopes"],
                hl7_facility=options["facility"],
                fhir_endpoint=options["endpoint"],
                hl7_certificates=options["hl7_certificates"],
                hl7_source_networks=options["hl7_source_networks"],
            )
        except ValidationFailed as exc:
            raise CommandError(str(exc)) from exc
        organization = issued.client.organization
        self.stdout.write(
            json.dumps(
                {
                    "organization_id": organization.pk,
                    "name": organization.name,
                    "identifier_systems": organization.identifier_system_uris,
                    "client_id": issued.client.client_id,
                    "client_secret": issued.client_secret,
                    "scopes": issued.client.scope_list,
                    "token_url": "/oauth/token",
                }
            )
        )
