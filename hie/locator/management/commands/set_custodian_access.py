"""manage.py set_custodian_access: the node's client credentials at a member's FHIR server.

The node uses them (OAuth2 client credentials) to fetch documents that member registered by
reference. The secret is read from the environment variable named by --secret-env, never from
the command line (which shells keep in their history).
"""

import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hie.locator.models import CustodianAccess
from hie.orgs.models import Organization


class Command(BaseCommand):
    help = "Store the node's client credentials at a member's FHIR server (for fetching its documents)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="the member's name")
        parser.add_argument("--endpoint", help="the member's FHIR base URL (documents must be under it)")
        parser.add_argument("--token-url", required=True)
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--secret-env", default="CUSTODIAN_CLIENT_SECRET",
                            help="environment variable holding the client secret")  # fmt: skip
        parser.add_argument("--scope", default="")

    def handle(self, *args: object, **options: object) -> None:
        organization = Organization.objects.filter(name=options["organization"]).first()
        if organization is None:
            raise CommandError("no member of that name")
        secret = os.environ.get(options["secret_env"], "")
        if not secret:
            raise CommandError(f"set the client secret in ${options['secret_env']}")
        if options["endpoint"]:
            organization.fhir_endpoint = options["endpoint"]
            organization.save(update_fields=["fhir_endpoint"])
        CustodianAccess.objects.update_or_create(
            organization=organization,
            defaults={"token_url": options["token_url"], "client_id": options["client_id"],
                      "client_secret": secret, "scope": options["scope"]},
        )  # fmt: skip
        self.stdout.write(f"credentials stored for {organization.name}")
