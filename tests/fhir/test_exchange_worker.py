"""Gather jobs and webhook deliveries carried out by a real Celery worker process, not inline."""

import pytest
import requests

from hie.exchange.models import CustodianCall, Delivery, DeliveryStatus, GatherJob, JobStatus
from hie.locator.models import DocumentEntry
from tests.conftest import wait_for, worker_log_problems
from tests.fhir.test_documents import document, submit
from tests.fhir.test_gather import gather, network, task_of  # noqa: F401 - network is a fixture
from tests.fhir.test_notifications import subscribe

pytestmark = [pytest.mark.worker]


def test_a_gather_job_is_done_by_the_worker_and_polled_over_http(network, celery_worker):  # noqa: F811
    requester, _ = network
    response = gather(requester, key="worker-job")
    assert response.status_code == 202
    location = f"{requester.base}{response.headers['Content-Location']}"

    def completed():
        task = task_of(requests.get(location, headers=requester.headers(), timeout=10))
        return task if task.status == "completed" else None

    def calls() -> str:
        rows = CustodianCall.objects.values_list("custodian__name", "status", "attempts", "last_error")
        return f"calls: {list(rows)}\n{worker_log_problems(celery_worker)}"

    task = wait_for(completed, timeout=60, explain=calls)
    assert task.businessStatus.text == "done: every custodian answered"
    assert GatherJob.objects.get().status == JobStatus.DONE
    assert set(DocumentEntry.objects.values_list("custodian__name", flat=True)) == {"Hospital", "Lab"}


def test_a_webhook_delivery_is_sent_by_the_worker(network, webhook_receiver, celery_worker):  # noqa: F811
    requester, [(hospital, _), _] = network
    receiver = webhook_receiver()
    subscribe(requester, receiver)
    assert submit(hospital, document(hospital, "H-1", "urn:uuid:worker-note")).status_code == 200
    wait_for(lambda: receiver.events, timeout=60)
    (event,) = receiver.events.values()
    assert event["type"] == "document-registered"
    assert wait_for(lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).exists(), timeout=30)
