"""manage.py create_member: add a member organization and its API client."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hie.exceptions import ValidationFailed
from hie.orgs.management.commands.hl7_sender import add_sender_arguments
from hie.orgs.management.keys import add_key_arguments, read_jwks
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
            help="SMART backend-services scopes granted to the client, v1 or v2 form (default: all, v1 form)",
        )
        parser.add_argument(
            "--purposes",
            nargs="+",
            default=None,
            help="HL7 PurposeOfUse codes the client may read under (default: every purpose the node knows)",
        )
        parser.add_argument(
            "--default-purpose",
            default=None,
            help="purpose of use of the member's reads that name none (default: FHIR_DEFAULT_PURPOSE_OF_USE; '' none)",
        )
        add_key_arguments(parser)

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
                default_purpose=options["default_purpose"],
                purposes=options["purposes"],
                jwks=read_jwks(options["jwks"]),
                jwks_uri=options["jwks_uri"],
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
                    "purposes_of_use": issued.client.purpose_list,
                    "default_purpose_of_use": organization.default_purpose_of_use,
                    "client_assertion_keys": "jwks"
                    if issued.client.jwks
                    else "jwks_uri"
                    if issued.client.jwks_uri
                    else "",
                    "token_url": "/oauth/token",
                }
            )
        )
