"""manage.py dedupe_csv IN.csv --out OUT.csv: batch deduplication through the production services.

Loads every row into the index (organizations created as needed), trains the model on them,
matches everything through Celery (inline in the embedded mode, on workers otherwise), and
writes the enterprise id the index gave each row.
"""

import csv
import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hie.bulk import BULK_COMMAND_CHECKS, alongside, analyze, rows_of, without_cycle_collection
from hie.orgs.models import Organization
from hie.orgs.services import create_organization
from matching.csv_input import read_registrations, readable_file
from matching.models import Link, LinkState, PendingMatch, Person, Source, TrainingRun
from matching.selectors import CURRENT_STATES
from matching.services import NewRegistration, analyze_registrations, register_records_bulk
from matching.tasks import match_batch_signature
from matching.training import train_and_activate


class Command(BaseCommand):
    help = "Deduplicate a CSV of registrations; writes org_id,local_id,person_id for every input row."
    requires_system_checks = BULK_COMMAND_CHECKS

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("input", type=readable_file)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--no-train", action="store_true", help="match with the active model as it is")
        parser.add_argument("--chunk", type=int, default=200_000, help="records per matching task")
        parser.add_argument("--stats", type=Path, help="write counts and timings as JSON here")

    @without_cycle_collection()
    def handle(self, *args: object, **options: object) -> None:
        timings = {}
        started = time.monotonic()
        registrations, errors = read_registrations(options["input"])
        if errors:
            shown = "; ".join(f"line {e.line}: {e.message}" for e in errors[:10])
            raise CommandError(f"{len(errors)} rows have errors, nothing was loaded: {shown}")

        with transaction.atomic():
            organizations = {org_id: self._organization(org_id) for org_id in {r.org_id for r in registrations}}
            ids = register_records_bulk(
                [
                    NewRegistration(organizations[r.org_id], self._system(r.org_id), r.local_id, r.demographics)
                    for r in registrations
                ],
                source=Source.CSV,
            )
        timings["load"] = time.monotonic() - started

        mark = time.monotonic()
        # The load's statistics are gathered while the model trains; matching needs both.
        with alongside(analyze_registrations):
            if not options["no_train"]:
                train_and_activate(TrainingRun.objects.create().pk)
        timings["train"] = time.monotonic() - mark

        mark = time.monotonic()
        pending = sorted(ids)
        for start in range(0, len(pending), options["chunk"]):
            match_batch_signature(pending[start : start + options["chunk"]]).delay()
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            self._wait_for_workers(list(organizations.values()))
        analyze(Person, Link)
        timings["match"] = time.monotonic() - mark

        mark = time.monotonic()
        persons, in_review = self._write(options["out"], registrations, organizations)
        timings["write"] = time.monotonic() - mark
        summary = " ".join(f"{step}={seconds:.1f}s" for step, seconds in timings.items())
        self.stderr.write(f"{len(ids)} records, {summary}, total={time.monotonic() - started:.1f}s")
        if options["stats"]:
            options["stats"].write_text(
                json.dumps({"records": len(ids), "persons": persons, "in_review": in_review, "timings": timings})
            )

    def _system(self, org_id: str) -> str:
        return f"urn:hie:csv:{org_id}"

    def _organization(self, org_id: str) -> Organization:
        organization = Organization.objects.filter(identifier_systems__uri=self._system(org_id)).first()
        return organization or create_organization(name=org_id, identifier_systems=[self._system(org_id)])

    def _wait_for_workers(self, organizations: list[Organization]) -> None:
        # The database, not the broker, says what is finished.
        while PendingMatch.objects.filter(record__organization__in=organizations).exists():
            time.sleep(1)

    def _write(self, path: Path, registrations: list, organizations: dict[str, Organization]) -> tuple[int, int]:
        """Write the output; (how many persons the rows are linked to, how many rows wait for review)."""
        # A record has at most one current link: one join finds every record's person.
        current = Link.objects.filter(state__in=CURRENT_STATES, record__organization__in=organizations.values())
        rows = rows_of(current.values_list("record__organization_id", "record__local_id", "person__euid", "state"))
        person_of = {(organization_id, local_id): euid for organization_id, local_id, euid, _ in rows}
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["org_id", "local_id", "person_id"])
            for r in registrations:
                writer.writerow([r.org_id, r.local_id, person_of.get((organizations[r.org_id].pk, r.local_id)) or ""])
        return len(set(person_of.values())), sum(state == LinkState.POSSIBLE_MATCH for *_, state in rows)
