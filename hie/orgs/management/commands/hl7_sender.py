"""manage.py hl7_sender MEMBER: what proves a member's HL7 v2 interface engine to the MLLP listener."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hie.exceptions import ValidationFailed
from hie.orgs.models import Organization
from hie.orgs.services import add_hl7_certificate, allow_hl7_source, disallow_hl7_source, remove_hl7_certificate


def certificate_argument(value: str) -> str:
    """A PEM file's text, or the value itself (a SHA-256 fingerprint)."""
    path = Path(value)
    return path.read_text() if path.is_file() else value


class Command(BaseCommand):
    help = (
        "Register (or remove) the TLS client certificates and source addresses from which a member sends "
        "HL7 v2; with no option, list them. Takes effect within HL7_MEMBER_CACHE_SECONDS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("member", help="organization name or id")
        add_sender_arguments(parser)
        parser.add_argument("--remove-certificate", action="append", default=[], type=certificate_argument,
                            metavar="PEM_FILE_OR_SHA256")  # fmt: skip
        parser.add_argument("--disallow-address", action="append", default=[], metavar="ADDRESS_OR_NETWORK")

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        member = options["member"]
        organization = Organization.objects.filter(name=member).first() or (
            Organization.objects.filter(pk=int(member)).first() if member.isdecimal() else None
        )
        if organization is None:
            raise CommandError(f"no member {member!r}")
        try:
            for certificate in options["hl7_certificates"]:
                add_hl7_certificate(organization=organization, certificate=certificate)
            for network in options["hl7_source_networks"]:
                allow_hl7_source(organization=organization, network=network)
            for certificate in options["remove_certificate"]:
                remove_hl7_certificate(organization=organization, certificate=certificate)
            for network in options["disallow_address"]:
                disallow_hl7_source(organization=organization, network=network)
        except ValidationFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{organization.name} (MSH-4 {organization.hl7_facility or 'not set'}) sends HL7 v2 from:")
        for certificate in organization.hl7_certificates.order_by("added_at"):
            self.stdout.write(f"  certificate sha256 {certificate.sha256}")
        for network in organization.hl7_source_networks.order_by("added_at"):
            self.stdout.write(f"  address {network.network}")
        if not organization.hl7_certificates.exists() and not organization.hl7_source_networks.exists():
            self.stdout.write("  nothing: every message it sends is refused with AR")


def add_sender_arguments(parser: CommandParser) -> None:
    """The options that register a member's HL7 v2 credentials (here and in create_member)."""
    parser.add_argument(
        "--hl7-certificate", action="append", default=[], dest="hl7_certificates", type=certificate_argument,
        metavar="PEM_FILE_OR_SHA256",
        help="a TLS client certificate (PEM file or SHA-256 fingerprint) that sends HL7 v2 as the member (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--hl7-allow-address", action="append", default=[], dest="hl7_source_networks",
        metavar="ADDRESS_OR_NETWORK",
        help="an address or network (CIDR) from which plain MLLP connections send as the member (repeatable)",
    )  # fmt: skip
