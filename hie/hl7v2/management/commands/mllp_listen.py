"""manage.py mllp_listen: receive HL7 v2 ADT messages over MLLP (TCP, optionally TLS)."""

import asyncio
import contextlib
import ssl

from django.core.management.base import BaseCommand, CommandParser

from hie.hl7v2.listener import Listener


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

    def handle(self, *args: object, **options: object) -> None:
        tls = None
        if options["tls_cert"]:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(options["tls_cert"], options["tls_key"])
        listener = Listener(options["host"], options["port"], tls=tls, threads=options["threads"])
        self.stdout.write(f"MLLP listening on {options['host']}:{options['port']}{' (TLS)' if tls else ''}")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(listener.serve_forever())
