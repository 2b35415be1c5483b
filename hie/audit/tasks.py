import logging

from celery import shared_task

from hie.audit.services import verify_chain

logger = logging.getLogger(__name__)


@shared_task
def verify_audit_chain() -> None:
    verification = verify_chain()
    log = logger.info if verification.intact else logger.error
    log(
        "audit chain verified",
        extra={
            "rows_checked": verification.rows_checked,
            "first_broken_sequence": verification.first_broken_sequence,
        },
    )
