"""manage.py seed_demo: a demo staff login, demo members with API clients, and their patients.

The patients are a synthetic population (matching/synthetic.py): people registered at one to
three of the members with typos, nicknames, moves, twins and Sr/Jr pairs, matched through the
same services as production. Safe to run again: what exists is kept, and each demo client
gets a fresh secret so the printed credentials always work.
"""

import json
import os

from celery import chain
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from hie.console.roles import ALL_ROLES
from hie.orgs.models import Organization
from hie.orgs.services import create_api_client, create_organization, rotate_client_secret
from matching.csv_input import parse_row
from matching.models import PatientRecord, Source, TrainingRun
from matching.services import NewRegistration, register_records_bulk
from matching.synthetic import generate
from matching.tasks import match_batch_task, train_model_task

DEMO_MEMBERS = [
    {
        "name": "Riverside General Hospital",
        "identifier_systems": ["urn:oid:2.16.840.1.113883.3.7001.1"],
        "hl7_facility": "RIVERSIDE",
    },
    {
        "name": "Lakeside Family Clinic",
        "identifier_systems": ["urn:oid:2.16.840.1.113883.3.7002.1"],
        "hl7_facility": "LAKESIDE",
    },
    {
        "name": "Metro Reference Lab",
        "identifier_systems": ["urn:oid:2.16.840.1.113883.3.7003.1"],
        "hl7_facility": "METROLAB",
    },
]


class Command(BaseCommand):
    help = "Create the demo staff login and demo members; prints the logins and client credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", "demo-hie-console"))
        parser.add_argument("--people", type=int, default=400, help="synthetic people to register (first seed only)")

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        user, created = get_user_model().objects.get_or_create(username=options["username"])
        if created:
            user.set_password(options["password"])
            user.save()
        user.groups.set(Group.objects.filter(name__in=ALL_ROLES))

        clients = []
        for member in DEMO_MEMBERS:
            organization = Organization.objects.filter(name=member["name"]).first()
            if organization is None:
                organization = create_organization(**member)
            client = organization.api_clients.filter(revoked_at__isnull=True).first()
            if client is None:
                issued = create_api_client(organization=organization, scopes=sorted(settings.FHIR_SCOPES))
                client, secret = issued.client, issued.client_secret
            else:
                secret = rotate_client_secret(client)
            clients.append(
                {
                    "organization": organization.name,
                    "identifier_system": member["identifier_systems"][0],
                    "client_id": client.client_id,
                    "client_secret": secret,
                }
            )

        seeded = self._seed_patients(options["people"])

        self.stdout.write(f"Demo patients: {seeded} registrations added.")
        self.stdout.write("Demo members and their API clients (secrets rotate on every seed):")
        self.stdout.write(json.dumps(clients, indent=2))
        password_note = options["password"] if created else "(unchanged from the first seed)"
        self.stdout.write(f"Staff console login: {user.username} / {password_note}")

    def _seed_patients(self, people: int) -> int:
        members = {m["hl7_facility"].lower(): Organization.objects.get(name=m["name"]) for m in DEMO_MEMBERS}
        if PatientRecord.objects.filter(organization__in=members.values()).exists() or people <= 0:
            return 0
        population = generate(people, organizations=sorted(members), seed=2026)
        registrations = [
            NewRegistration(
                members[row["org_id"]],
                members[row["org_id"]].identifier_system_uris[0],
                row["local_id"],
                parse_row(0, row).demographics,
            )
            for row in population.rows
        ]
        ids = register_records_bulk(registrations, source=Source.CSV)
        run = TrainingRun.objects.create()
        # Train on the new records first, then match them with the trained model.
        transaction.on_commit(lambda: chain(train_model_task.si(run.pk), match_batch_task.si(ids)).delay())
        return len(ids)
