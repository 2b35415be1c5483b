"""Matching every active record again with the active model, as a long job staff start from the console.

Each record goes through match_record() in its own transaction, as match-on-write does, so
manual decisions stay as people made them and the job can stop and resume at any record.
"""

import logging

from django.db import transaction
from django.utils import timezone

from matching.models import PatientRecord, RematchRun
from matching.services import match_record

logger = logging.getLogger(__name__)
CHUNK = 200


def request_rematch(*, requested_by_id: int | None = None) -> RematchRun:
    """Queue a run (one waiting run is reused rather than queueing two)."""
    from matching.tasks import rematch_task  # matching.tasks imports this module

    with transaction.atomic():
        waiting = RematchRun.objects.filter(status=RematchRun.Status.QUEUED).order_by("pk").first()
        if waiting is not None:
            return waiting
        run = RematchRun.objects.create(requested_by_id=requested_by_id, message="waiting for a worker")
        transaction.on_commit(lambda: rematch_task.delay(run.pk))
    return run


def run_rematch(run_id: int) -> RematchRun:
    run = RematchRun.objects.get(pk=run_id)
    if run.status in (RematchRun.Status.DONE, RematchRun.Status.FAILED):
        return run
    ids = list(PatientRecord.objects.filter(active=True).order_by("pk").values_list("pk", flat=True))
    run.status, run.total, run.message = RematchRun.Status.RUNNING, len(ids), "matching"
    run.save(update_fields=["status", "total", "message"])
    start = run.done  # a run picked up again after a worker died goes on where it stopped
    try:
        for offset in range(start, len(ids), CHUNK):
            for record_id in ids[offset : offset + CHUNK]:
                outcome = match_record(record_id)
                run.changed += outcome.decision not in ("unchanged", "manual", "inactive")
            run.done = min(offset + CHUNK, len(ids))
            run.save(update_fields=["done", "changed"])
    except Exception:
        logger.exception("re-match run failed", extra={"run": run.pk})
        run.status, run.message, run.finished_at = RematchRun.Status.FAILED, "failed; see the logs", timezone.now()
        run.save(update_fields=["status", "message", "finished_at"])
        raise
    run.status, run.finished_at = RematchRun.Status.DONE, timezone.now()
    run.message = f"{run.changed} of {run.total} records changed link"
    run.save(update_fields=["status", "finished_at", "message"])
    return run
