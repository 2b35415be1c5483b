"""Gather jobs through the real server and Celery tasks: every custodian asked, retries, the circuit
breaker, dead letters and their replay, the pause switch, the deadline, and idempotency."""

import base64
import hashlib
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.utils import timezone
from fhir.resources.R4B.task import Task

from consent.models import MemberPolicy
from hie.audit.services import Actor
from hie.exchange import services
from hie.exchange.models import CallStatus, CustodianCall, DeadLetter, GatherJob, JobStatus
from hie.exchange.services import replay_dead_letter, set_endpoint_paused, sweep_jobs
from hie.locator.models import CustodianAccess, DocumentEntry
from hie.orgs.services import create_organization
from matching.models import Person
from tests.fhir.conftest import patient
from tests.fhir.custodian import CLIENT_ID, CLIENT_SECRET


def register_patient(member, local_id: str) -> None:
    response = requests.put(f"{member.base}/fhir/Patient", params={"identifier": f"{member.system}|{local_id}"},
                            json=patient(member.system, local_id), headers=member.headers(), timeout=10)  # fmt: skip
    assert response.status_code in (200, 201), response.text


def listed(held, name: str, body: bytes) -> dict:
    held.documents[name] = body
    sha1 = hashlib.sha1(body, usedforsecurity=False).digest()  # FHIR R4 Attachment.hash
    return {
        "resourceType": "DocumentReference", "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{name}"},
        "subject": {"reference": "Patient/123"},
        "content": [{"attachment": {"contentType": "application/pdf", "url": held.url(name), "size": len(body),
                                    "hash": base64.b64encode(sha1).decode()}}],
    }  # fmt: skip


@pytest.fixture
def network(member, custodian_server, settings):
    """A requesting member and two custodians with loopback FHIR servers, all holding the same patient."""
    settings.EXCHANGE_MAX_ATTEMPTS = 3
    settings.CUSTODIAN_TIMEOUT_SECONDS = 2
    requester = member("Requester")
    register_patient(requester, "Q-1")
    custodians = []
    for name, local_id in (("Hospital", "H-1"), ("Lab", "L-1")):
        m = member(name)
        held = custodian_server()
        m.organization.fhir_endpoint = f"{held.base}/r4"
        m.organization.save()
        CustodianAccess.objects.create(organization=m.organization, token_url=f"{held.base}/token",
                                       client_id=CLIENT_ID, client_secret=CLIENT_SECRET)  # fmt: skip
        register_patient(m, local_id)
        held.listings[local_id] = [listed(held, f"{name.lower()}-doc", f"{name} note".encode())]
        custodians.append((m, held))
    return requester, custodians


def gather(requester, key: str = "job-1", **parameters) -> requests.Response:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueIdentifier": {"system": requester.system, "value": "Q-1"}},
        *({"name": k, **v} for k, v in parameters.items()),
    ]}  # fmt: skip
    return requests.post(f"{requester.base}/fhir/Patient/$gather-documents", json=body,
                         headers=requester.headers(**{"Idempotency-Key": key}), timeout=30)  # fmt: skip


def task_of(response: requests.Response) -> Task:
    return Task.model_validate_json(response.content)


def test_gather_asks_every_custodian_and_a_failing_one_ends_in_a_dead_letter_then_replays(network):
    requester, [(hospital, _), (lab, lab_server)] = network
    lab_server.faults["search"] = "500"
    response = gather(requester)
    assert response.status_code == 202, response.text
    status = requests.get(f"{requester.base}{response.headers['Content-Location']}", headers=requester.headers(),
                          timeout=10)  # fmt: skip
    task = task_of(status)
    assert task.status == "completed"
    assert task.businessStatus.text.startswith("done: some custodians")
    outcome = task.contained[0]
    assert f"Organization/{lab.organization.pk}" in outcome.issue[0].diagnostics
    assert DocumentEntry.objects.filter(custodian=hospital.organization).count() == 1
    assert not DocumentEntry.objects.filter(custodian=lab.organization).exists()
    call = CustodianCall.objects.get(custodian=lab.organization)
    assert (call.status, call.attempts) == (CallStatus.FAILED, 3)
    assert len([p for p in lab_server.requests if p.startswith("/r4/DocumentReference")]) == 3
    letter = DeadLetter.objects.get(resolved=False)

    lab_server.faults.clear()
    replay_dead_letter(letter=letter, actor=Actor())
    letter.refresh_from_db()
    assert letter.resolved
    assert DocumentEntry.objects.filter(custodian=lab.organization).count() == 1
    job = GatherJob.objects.get()
    assert job.status == JobStatus.DONE
    found = requests.get(f"{requester.base}/fhir/DocumentReference", headers=requester.headers(), timeout=10,
                         params={"patient.identifier": f"{requester.system}|Q-1", "status": "current"})  # fmt: skip
    assert found.json()["total"] == 2


def test_the_same_idempotency_key_returns_the_same_job(network):
    requester, _ = network
    first = gather(requester, key="same")
    again = gather(requester, key="same")
    assert (first.status_code, again.status_code) == (202, 200)
    assert task_of(first).id == task_of(again).id
    assert GatherJob.objects.count() == 1
    other = gather(requester, key="other")
    assert task_of(other).id != task_of(first).id


def test_a_custodian_whose_documents_are_all_hidden_is_not_asked(network):
    requester, [(hospital, hospital_server), _] = network
    MemberPolicy.objects.create(organization=hospital.organization, policy="deny")
    gather(requester)
    assert CustodianCall.objects.get(custodian=hospital.organization).status == CallStatus.SKIPPED
    assert not [p for p in hospital_server.requests if p.startswith("/r4/DocumentReference")]


def test_the_circuit_breaker_stops_calling_a_failing_endpoint(network, settings):
    settings.EXCHANGE_MAX_ATTEMPTS = 5
    settings.EXCHANGE_BREAKER_FAILURES = 2
    requester, [_, (lab, lab_server)] = network
    lab_server.faults["search"] = "500"
    gather(requester)
    # Two real failures open the breaker; the remaining attempts fail fast without calling.
    assert len([p for p in lab_server.requests if p.startswith("/r4/DocumentReference")]) == 2
    call = CustodianCall.objects.get(custodian=lab.organization)
    assert call.status == CallStatus.FAILED
    assert call.last_error == "circuit breaker open"


def test_a_paused_endpoint_is_not_called_until_resumed(network):
    requester, [_, (lab, lab_server)] = network
    set_endpoint_paused(organization=lab.organization, paused=True, actor=Actor())
    gather(requester, deadline={"valueInteger": 120})
    assert CustodianCall.objects.get(custodian=lab.organization).status == CallStatus.PENDING
    assert not [p for p in lab_server.requests if p.startswith("/r4/DocumentReference")]
    set_endpoint_paused(organization=lab.organization, paused=False, actor=Actor())
    assert CustodianCall.objects.get(custodian=lab.organization).status == CallStatus.DONE
    assert GatherJob.objects.get().status == JobStatus.DONE


def test_the_deadline_ends_the_job_naming_who_did_not_answer(network):
    requester, [_, (lab, _)] = network
    set_endpoint_paused(organization=lab.organization, paused=True, actor=Actor())
    response = gather(requester, deadline={"valueInteger": 1})
    time.sleep(1.2)
    assert sweep_jobs() == 1
    task = task_of(requests.get(f"{requester.base}{response.headers['Content-Location']}",
                                headers=requester.headers(), timeout=10))  # fmt: skip
    assert task.businessStatus.text.startswith("done: some custodians")
    assert task.contained[0].issue[0].code == "timeout"


def test_prefetch_keeps_a_checked_copy_served_without_calling_the_custodian(network):
    requester, [(hospital, hospital_server), _] = network
    gather(requester, prefetch={"valueBoolean": True})
    entry = DocumentEntry.objects.get(custodian=hospital.organization)
    assert entry.prefetched
    calls_before = len(hospital_server.requests)
    content = requests.get(f"{requester.base}/fhir/Binary/{entry.pk}", headers=requester.headers(), timeout=10)
    assert content.content == b"Hospital note"
    assert len(hospital_server.requests) == calls_before


def test_only_the_requester_sees_its_job(network, member):
    requester, _ = network
    location = gather(requester).headers["Content-Location"]
    stranger = member("Stranger")
    assert requests.get(f"{stranger.base}{location}", headers=stranger.headers(), timeout=10).status_code == 404


def test_two_calls_ending_at_once_on_two_workers_end_their_job(audit_rows_flushable, monkeypatch):
    """Each worker's transaction has marked its own call done when both settle the job: the
    second to settle must see the first's call ended."""
    if connection.vendor != "postgresql":
        pytest.skip("two concurrent transactions need PostgreSQL")
    requester, hospital, lab = (create_organization(name=n, identifier_systems=[f"urn:oid:9.9.{i}"])
                                for i, n in enumerate(["Requester", "Hospital", "Lab"]))  # fmt: skip
    job = GatherJob.objects.create(requester=requester, person=Person.objects.create(euid="ESETTLE0000001"),
                                   purpose="TREAT", idempotency_key="k", status=JobStatus.RUNNING,
                                   deadline=timezone.now() + timedelta(minutes=5))  # fmt: skip
    calls = [CustodianCall.objects.create(job=job, custodian=c, status=CallStatus.PENDING) for c in (hospital, lab)]
    both_marked = threading.Barrier(2)
    real_settle = services._settle

    def settle_when_both_marked(job: GatherJob) -> None:
        both_marked.wait(timeout=10)  # neither transaction has committed its call yet
        real_settle(job)

    monkeypatch.setattr(services, "_settle", settle_when_both_marked)

    def finish(call_id: int) -> None:
        try:
            services._succeeded(call_id, 0)
        finally:
            connection.close()

    workers = [threading.Thread(target=finish, args=(call.pk,)) for call in calls]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
