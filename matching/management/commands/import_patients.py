"""manage.py import_patients FILE.csv --org ORG: bulk-load one member's registrations."""

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hie.bulk import BULK_COMMAND_CHECKS
from hie.exceptions import HieError
from hie.orgs.models import Organization
from matching.csv_input import HEADER, CsvError, read_registrations, readable_file
from matching.models import Source
from matching.services import NewRegistration, analyze_registrations, register_records_bulk
from matching.tasks import match_batch_signature

BATCH = 5000


class Command(BaseCommand):
    help = (
        "Load a member's registrations from CSV (header: " + ",".join(HEADER) + "). Every row is checked first; "
        "if any row is wrong, nothing is loaded and the report file lists each error by line."
    )
    requires_system_checks = BULK_COMMAND_CHECKS

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=readable_file)
        parser.add_argument("--org", required=True, help="organization name or id")
        parser.add_argument("--identifier-system", help="default: the organization's first identifier system")
        parser.add_argument("--report", type=Path, help="where to write row errors (default: FILE.errors.txt)")

    def handle(self, *args: object, **options: object) -> None:
        org_arg = options["org"]
        organization = Organization.objects.filter(name=org_arg).first() or (
            Organization.objects.filter(pk=int(org_arg)).first() if org_arg.isdecimal() else None
        )
        if organization is None:
            raise CommandError(f"no organization {org_arg!r}")
        system = options["identifier_system"] or organization.identifier_system_uris[0]
        registrations, errors = read_registrations(options["file"])
        own_names = {organization.name, str(organization.pk)}
        errors += [
            CsvError(r.line, "org_id names another organization than --org")
            for r in registrations
            if r.org_id and r.org_id not in own_names
        ]
        if errors:
            report = options["report"] or options["file"].with_suffix(".errors.txt")
            report.write_text("".join(f"line {e.line}: {e.message}\n" for e in sorted(errors, key=lambda e: e.line)))
            raise CommandError(f"{len(errors)} rows have errors; nothing was loaded. See {report}")

        started = time.monotonic()
        ids: list[int] = []
        try:
            with transaction.atomic():
                for start in range(0, len(registrations), BATCH):
                    part = registrations[start : start + BATCH]
                    ids += register_records_bulk(
                        [NewRegistration(organization, system, r.local_id, r.demographics) for r in part],
                        source=Source.CSV,
                    )
                    self._progress(len(ids), len(registrations))
                transaction.on_commit(match_batch_signature(ids).delay)
        except HieError as exc:
            raise CommandError(str(exc)) from exc
        analyze_registrations()
        sys.stderr.write("\n")
        self.stdout.write(
            f"loaded {len(ids)} registrations for {organization.name} in {time.monotonic() - started:.1f}s; "
            "matching queued"
        )

    def _progress(self, done: int, total: int) -> None:
        width = 40
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
