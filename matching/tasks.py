"""Celery entry points of the master patient index. Each takes ids and calls one service."""

from dataclasses import asdict
from datetime import timedelta

from celery import Signature, shared_task
from django.utils import timezone

from matching.batch import match_batch
from matching.models import PendingMatch
from matching.rematch import run_rematch
from matching.services import match_record
from matching.training import train_and_activate


@shared_task
def match_record_task(record_id: int) -> None:
    match_record(record_id)


@shared_task
def sweep_pending_matches(older_than_seconds: int = 120) -> int:
    """Re-enqueue records stored but never matched (a lost message, a worker that died)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(PendingMatch.objects.filter(since__lt=cutoff).values_list("record_id", flat=True)[:10_000])
    for record_id in ids:
        match_record_task.delay(record_id)
    return len(ids)


@shared_task
def train_model_task(run_id: int) -> None:
    train_and_activate(run_id)


@shared_task
def match_batch_task(record_ids: list[int]) -> dict:
    return asdict(match_batch(record_ids))


def match_batch_signature(record_ids: list[int]) -> Signature:
    """match_batch_task for these records, shown in a worker's log by their number: the ids of a
    batch of 200,000 records would make each log line of the task a megabyte long."""
    return match_batch_task.si(record_ids).set(argsrepr=f"[<{len(record_ids)} record ids>]")


@shared_task(acks_late=True)
def rematch_task(run_id: int) -> None:
    run_rematch(run_id)
