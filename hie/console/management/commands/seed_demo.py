"""manage.py seed_demo: a demo staff login, demo members with API clients, and their patients.

The patients are a synthetic population (matching/synthetic.py): people registered at one to
three of the members with typos, nicknames, moves, twins and Sr/Jr pairs, matched through the
same services as production. Safe to run again: what exists is kept, and each demo client
gets a fresh secret so the printed credentials always work.
"""

import json
import os
import uuid

from celery import chain
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from hie.audit.services import SYSTEM
from hie.console.roles import ALL_ROLES
from hie.exchange.services import start_gather
from hie.fhir.document import DocumentSubmission
from hie.locator.services import register_documents
from hie.orgs.models import Organization
from hie.orgs.services import (
    allow_hl7_source,
    create_api_client,
    create_organization,
    rotate_client_secret,
    set_fhir_endpoint,
)
from matching.csv_input import parse_row
from matching.models import Link, LinkState, PatientRecord, Source, TrainingRun
from matching.services import NewRegistration, register_records_bulk
from matching.synthetic import generate
from matching.tasks import match_batch_signature, train_model_task

DEMO_DOCUMENTS = 120  # demo records that get a document held by the node
DEMO_DOCUMENT_TYPES = [("Discharge summary", "18842-5"), ("Progress note", "11506-3"), ("Laboratory report", "11502-2")]
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


UNREACHABLE_ENDPOINT = "http://127.0.0.1:9/fhir/r4"  # nothing listens on the discard port


def _seed_gather_job() -> None:
    """A real gather job from the demo hospital to the demo lab, whose endpoint does not answer,
    so the console's Exchange page has a dead letter to look at and replay."""
    hospital = Organization.objects.get(name=DEMO_MEMBERS[0]["name"])
    lab = Organization.objects.get(name=DEMO_MEMBERS[2]["name"])
    if not lab.fhir_endpoint:
        set_fhir_endpoint(organization=lab, fhir_endpoint=UNREACHABLE_ENDPOINT)
    held_by_both = Link.objects.filter(state=LinkState.MATCH, record__organization=hospital).values("person_id")
    link = Link.objects.filter(state=LinkState.MATCH, record__organization=lab, person_id__in=held_by_both).first()
    if link is not None:
        with transaction.atomic():
            start_gather(requester=hospital, person=link.person, purpose="TREAT", idempotency_key="demo-gather",
                         prefetch=False, deadline_seconds=600, actor=SYSTEM)  # fmt: skip


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
            if member is DEMO_MEMBERS[0]:
                # The demo's HL7 sender: plain MLLP from this machine speaks for the hospital (the
                # sample message's MSH-4); the other members send nothing until given a credential.
                allow_hl7_source(organization=organization, network="127.0.0.1")
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
        if seeded:
            # After the demo records are matched (their tasks run on commit, in this order).
            transaction.on_commit(_seed_gather_job)

        self.stdout.write(f"Demo patients: {seeded} registrations added.")
        self.stdout.write("Demo members and their API clients (secrets rotate on every seed):")
        self.stdout.write(json.dumps(clients, indent=2))
        password_note = options["password"] if created else "(unchanged from the first seed)"
        self.stdout.write(f"Staff console login: {user.username} / {password_note}")

    def _seed_documents(self, record_ids: list[int]) -> None:
        """A synthetic note held by the node for some demo records, so the console shows documents."""
        by_custodian: dict[int, list] = {}
        for record in PatientRecord.objects.filter(pk__in=record_ids).select_related("organization"):
            kind, code = DEMO_DOCUMENT_TYPES[record.pk % len(DEMO_DOCUMENT_TYPES)]
            master = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'hie-demo-document-{record.pk}')}"
            resource = {
                "resourceType": "DocumentReference", "status": "current",
                "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master},
                "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": kind}]},
                "subject": {"identifier": {"system": record.identifier_system, "value": record.local_id}},
                "content": [{"attachment": {"contentType": "text/plain", "title": kind}}],
            }  # fmt: skip
            by_custodian.setdefault(record.organization_id, [record.organization, []])[1].append(
                DocumentSubmission(
                    where="demo", master_system="urn:ietf:rfc:3986", master_value=master,
                    patient_system=record.identifier_system, patient_value=record.local_id,
                    content_type="text/plain", data=f"Synthetic demo {kind.lower()}.\n".encode(), title=kind,
                    type_code=f"http://loinc.org|{code}", date=timezone.now(), resource=resource,
                )
            )  # fmt: skip
        for organization, documents in by_custodian.values():
            register_documents(custodian=organization, documents=documents, submission_set="", actor=SYSTEM)

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
        self._seed_documents(ids[:DEMO_DOCUMENTS])
        run = TrainingRun.objects.create()
        # Train on the new records first, then match them with the trained model.
        transaction.on_commit(lambda: chain(train_model_task.si(run.pk), match_batch_signature(ids)).delay())
        return len(ids)
