"""Tasks go through a real worker on Redis, only after their transaction commits."""

import json

import pytest
from django.db import transaction

from hie.audit.models import ChainVerification
from hie.audit.tasks import verify_audit_chain
from hie.requestid import request_id_context
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


class Abandon(Exception):
    pass


def enqueue_then_roll_back() -> None:
    with transaction.atomic():
        verify_audit_chain.delay_on_commit()
        raise Abandon


def test_task_runs_once_after_commit_and_never_after_rollback(celery_worker):
    with request_id_context("req-rolled-back"), pytest.raises(Abandon):
        enqueue_then_roll_back()
    with request_id_context("req-committed"), transaction.atomic():
        verify_audit_chain.delay_on_commit()

    verification = wait_for(lambda: ChainVerification.objects.first())
    assert verification.request_id == "req-committed"
    # Give a wrongly sent rolled-back task time to show up before counting.
    verify_audit_chain.delay()
    wait_for(lambda: ChainVerification.objects.count() >= 2)
    assert ChainVerification.objects.filter(request_id="req-rolled-back").count() == 0
    assert ChainVerification.objects.filter(request_id="req-committed").count() == 1


def test_worker_logs_carry_the_request_id(celery_worker):
    with request_id_context("req-in-worker-log"), transaction.atomic():
        verify_audit_chain.delay_on_commit()

    def logged():
        lines = [json.loads(line) for line in celery_worker.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("request_id") == "req-in-worker-log"]

    lines = wait_for(logged)
    assert any(line["message"] == "audit chain verified" for line in lines)
