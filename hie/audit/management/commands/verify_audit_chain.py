"""manage.py verify_audit_chain: recompute every hash and name the first row that does not verify."""

from django.core.management.base import BaseCommand, CommandError

from hie.audit.services import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits non-zero and names the first broken row."

    def handle(self, *args: object, **options: object) -> None:
        verification = verify_chain()
        if not verification.intact:
            raise CommandError(
                f"audit chain broken at sequence {verification.first_broken_sequence} "
                f"({verification.rows_checked} rows read)"
            )
        self.stdout.write(f"audit chain intact: {verification.rows_checked} rows")
