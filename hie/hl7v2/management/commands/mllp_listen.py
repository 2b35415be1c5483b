"""manage.py mllp_listen: receive HL7 v2 ADT messages over MLLP (TCP, optionally TLS)."""

import asyncio
import contextlib

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hie.hl7v2.listener import Listener, tls_context


class Command(BaseCommand):
    help = "Listen for HL7 v2 messages over MLLP; each is stored before it is acknowledged."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2575)
        parser.add_argument(
            "--threads",
            type=int,
            default=1,
            help="database threads, each storing a batch of waiting messages in one transaction",
        )
        parser.add_argument("--tls-cert", help="PEM certificate chain: serve MLLP over TLS")
        parser.add_argument("--tls-key", help="PEM private key of the certificate")
        parser.add_argument(
            "--tls-client-ca",
            help="PEM CA certificate(s) that sign members' client certificates: each one presented is verified, "
            "and the member that registered its fingerprint (manage.py hl7_sender) is the sender",
        )
        parser.add_argument(
            "--require-client-cert",
            action="store_true",
            help="refuse the TLS handshake of a client without a certificate (otherwise it is known by its address)",
        )

    def handle(self, *args: object, **options: object) -> None:
        tls = None
        if options["tls_client_ca"] and not options["tls_cert"]:
            raise CommandError("--tls-client-ca needs --tls-cert and --tls-key: client certificates come with TLS")
        if options["tls_cert"]:
            try:
                tls = tls_context(certificate=options["tls_cert"], key=options["tls_key"],
                                  client_ca=options["tls_client_ca"],
                                  require_client_certificate=options["require_client_cert"])  # fmt: skip
            except (OSError, ValueError) as exc:
                raise CommandError(f"TLS: {exc}") from exc
        listener = Listener(options["host"], options["port"], tls=tls, threads=options["threads"])
        mode = " (TLS, client certificates)" if options["tls_client_ca"] else " (TLS)" if tls else ""
        self.stdout.write(f"MLLP listening on {options['host']}:{options['port']}{mode}")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(listener.serve_forever())
