"""manage.py replay_inbox: put HL7 messages back in line for processing."""

from django.core.management.base import BaseCommand, CommandParser

from hie.hl7v2.models import MessageState
from hie.hl7v2.services import replay


class Command(BaseCommand):
    help = "Re-process failed HL7 messages (and with --waiting, those still waiting)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--waiting", action="store_true", help="also restart messages still waiting")
        parser.add_argument("--organization", type=int, help="only this organization's messages")

    def handle(self, *args: object, **options: object) -> None:
        states = (MessageState.FAILED, MessageState.RECEIVED) if options["waiting"] else (MessageState.FAILED,)
        count = replay(states=states, organization_id=options["organization"])
        self.stdout.write(f"{count} messages queued for processing")
