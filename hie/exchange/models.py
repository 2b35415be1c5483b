"""Document exchange jobs: gathering a person's documents from every custodian, with retries,
a circuit breaker per custodian endpoint, and dead letters that staff can replay."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done", "done: every custodian answered"
    PARTIAL = "partial", "done: some custodians did not answer"


class GatherJob(models.Model):
    """A member's request to refresh the locator from every custodian holding records of a person."""

    requester = models.ForeignKey("orgs.Organization", on_delete=models.PROTECT, related_name="gather_jobs")
    person = models.ForeignKey("matching.Person", on_delete=models.PROTECT, related_name="gather_jobs")
    purpose = models.CharField(max_length=20)
    idempotency_key = models.CharField(max_length=100)
    prefetch = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    deadline = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["requester", "idempotency_key"], name="gather_job_idempotent_per_member")
        ]
        indexes = [models.Index(fields=["status", "deadline"])]

    def __str__(self) -> str:
        return f"gather job {self.pk} ({self.status})"


class CallStatus(models.TextChoices):
    PENDING = "pending", "waiting for its (next) attempt"
    DONE = "done"
    SKIPPED = "skipped", "not asked: the requester may see none of its documents"
    FAILED = "failed", "failed: retries exhausted (dead letter)"
    TIMED_OUT = "timed-out", "not answered before the job's deadline"


class CustodianCall(models.Model):
    """One custodian's part of a gather job."""

    job = models.ForeignKey(GatherJob, on_delete=models.CASCADE, related_name="calls")
    custodian = models.ForeignKey("orgs.Organization", on_delete=models.PROTECT, related_name="custodian_calls")
    status = models.CharField(max_length=10, choices=CallStatus.choices, default=CallStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, help_text="What failed, never patient data")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    documents = models.PositiveIntegerField(default=0, help_text="Current documents the custodian listed")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "custodian"], name="custodian_call_once_per_job")]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"call {self.pk} of job {self.job_id} ({self.status})"


class EndpointState(models.Model):
    """The circuit breaker of one custodian's endpoint, and the switch that pauses calls to it."""

    organization = models.OneToOneField("orgs.Organization", on_delete=models.CASCADE, related_name="endpoint_state")
    consecutive_failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True, help_text="No calls before this time (breaker open)")
    paused = models.BooleanField(default=False, help_text="Staff paused every call and retry to this endpoint")
    paused_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")  # fmt: skip

    def __str__(self) -> str:
        return f"endpoint of organization {self.organization_id}"


class DeadLetter(models.Model):
    """Work that ran out of retries, kept to be replayed (one or in bulk) from the console."""

    call = models.ForeignKey(CustodianCall, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="dead_letters")  # fmt: skip
    kind = models.CharField(max_length=20, default="gather")
    error = models.CharField(max_length=300)
    attempts = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replays = models.PositiveSmallIntegerField(default=0)
    resolved = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["resolved", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["call"], condition=Q(resolved=False), name="dead_letter_one_open_per_call")
        ]

    def __str__(self) -> str:
        return f"dead letter {self.pk} ({'resolved' if self.resolved else 'open'})"
