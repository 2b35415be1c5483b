"""Mapping of gather jobs: the $gather-documents Parameters in, a FHIR Task out."""

from dataclasses import dataclass

from django.conf import settings
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.task import Task

from hie.exceptions import ValidationFailed
from hie.exchange.models import CallStatus, GatherJob, JobStatus
from hie.fhir.patient import parse_resource

TASK_STATUS = {JobStatus.QUEUED: "requested", JobStatus.RUNNING: "in-progress", JobStatus.DONE: "completed",
               JobStatus.PARTIAL: "completed"}  # fmt: skip
NOT_ANSWERED = {CallStatus.FAILED, CallStatus.TIMED_OUT}


@dataclass(frozen=True)
class GatherRequest:
    patient_system: str | None  # None with an EUID reference
    patient_value: str
    prefetch: bool
    deadline_seconds: int


def gather_request(body: bytes) -> GatherRequest:
    parameters = parse_resource(body, Parameters, "the Parameters")
    given = {p.name: p for p in parameters.parameter or []}
    patient = given.get("patient")
    if patient is None:
        raise ValidationFailed("name the patient: parameter patient (valueIdentifier, or valueReference Patient/EUID)")
    if patient.valueIdentifier is not None and patient.valueIdentifier.value:
        system, value = patient.valueIdentifier.system, patient.valueIdentifier.value
    elif patient.valueReference is not None and patient.valueReference.reference:
        system, value = None, patient.valueReference.reference.rsplit("/", 1)[-1]
    else:
        raise ValidationFailed("parameter patient needs valueIdentifier or valueReference")
    prefetch = given["prefetch"].valueBoolean if "prefetch" in given else False
    deadline = given["deadline"].valueInteger if "deadline" in given else settings.EXCHANGE_DEFAULT_DEADLINE_SECONDS
    return GatherRequest(system, value, bool(prefetch), int(deadline or 0))


def job_to_fhir(job: GatherJob) -> Task:
    """The job as a Task: its status, one output per custodian, and an OperationOutcome naming the
    custodians that did not answer, so a partial answer is never silent."""
    # A custodian consent kept the job from asking is not named: the Task does not say who else
    # holds records of the person where consent hides their documents.
    calls = list(job.calls.exclude(status=CallStatus.SKIPPED).select_related("custodian").order_by("custodian__name"))
    outputs = [
        {
            "type": {"text": "custodian"},
            "valueString": f"Organization/{c.custodian_id} ({c.custodian.name}): {c.get_status_display()}"
            + (f", {c.documents} current documents" if c.status == CallStatus.DONE else "")
            + (f", attempt {c.attempts}" if c.status == CallStatus.PENDING and c.attempts else ""),
        }
        for c in calls
    ]
    resource = {
        "resourceType": "Task",
        "id": str(job.pk),
        "status": TASK_STATUS[job.status],
        "intent": "order",
        "code": {"text": "gather-documents"},
        "for": {"reference": f"Patient/{job.person.euid}"},
        "requester": {"reference": f"Organization/{job.requester_id}"},
        "authoredOn": job.created_at.isoformat(),
        "restriction": {"period": {"end": job.deadline.isoformat()}},
        "businessStatus": {"text": job.get_status_display()},
        "output": outputs,
    }
    missing = [c for c in calls if c.status in NOT_ANSWERED]
    if job.status == JobStatus.PARTIAL and missing:
        resource["contained"] = [{
            "resourceType": "OperationOutcome", "id": "unanswered",
            "issue": [{"severity": "warning", "code": "timeout" if c.status == CallStatus.TIMED_OUT else "transient",
                       "diagnostics": f"Organization/{c.custodian_id} did not answer: {c.last_error or c.status}"}
                      for c in missing],
        }]  # fmt: skip
        resource["output"].append(
            {"type": {"text": "unanswered custodians"}, "valueReference": {"reference": "#unanswered"}}
        )
    return Task.model_validate(resource)
