"""Document exchange: gather jobs that collect a person's documents from every custodian (retries,
a circuit breaker per endpoint, dead letters that staff can replay), and notifications of events
about members' patients, through an outbox, to their webhooks."""

import uuid

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
    delivery = models.ForeignKey("Delivery", null=True, blank=True, on_delete=models.CASCADE,
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
            models.UniqueConstraint(fields=["call"], condition=Q(resolved=False), name="dead_letter_one_open_per_call"),
            models.UniqueConstraint(
                fields=["delivery"], condition=Q(resolved=False), name="dead_letter_one_open_per_delivery"
            ),
        ]

    def __str__(self) -> str:
        return f"dead letter {self.pk} ({'resolved' if self.resolved else 'open'})"


class EventKind(models.TextChoices):
    DOCUMENT_REGISTERED = "document-registered", "a document was registered for the patient, anywhere"
    RECORD_LINKED = "record-linked", "another member's record was linked to the patient"
    PERSONS_MERGED = "persons-merged", "two enterprise identities of the patient were merged"
    ADMISSION = "admission", "the patient was admitted or registered at another member (ADT A01/A04)"


class Subscription(models.Model):
    """A member's webhook for events about its patients (FHIR Subscription, rest-hook channel)."""

    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="subscriptions")
    endpoint = models.URLField(max_length=500)
    events = models.JSONField(help_text="EventKind values")
    secret = models.CharField(max_length=64, help_text="Signs each body (HMAC-SHA256); shown to the member once")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["active", "organization"])]

    def __str__(self) -> str:
        return f"subscription {self.pk} of organization {self.organization_id}"


class OutboxEvent(models.Model):
    """An event, written in the same transaction as the change it reports; fanned out to subscriptions
    once its person is known (an HL7 admission waits for matching)."""

    event_id = models.UUIDField(unique=True, default=uuid.uuid4, help_text="Receivers drop repeats by this id")
    kind = models.CharField(max_length=30, choices=EventKind.choices)
    person = models.ForeignKey("matching.Person", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    record = models.ForeignKey("matching.PatientRecord", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")  # fmt: skip
    source = models.ForeignKey("orgs.Organization", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+", help_text="The member whose act it reports; not notified")  # fmt: skip
    detail = models.JSONField(default=dict, blank=True, help_text="References and codes only, never PHI")
    dispatched = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["dispatched", "created_at"])]

    def __str__(self) -> str:
        return f"event {self.event_id} ({self.kind})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed", "failed: retries exhausted (dead letter)"


class Delivery(models.Model):
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "subscription"], name="delivery_once_per_subscription")]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"
