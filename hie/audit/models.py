"""The audit trail: append-only rows, each hashed over its content and the previous row's hash."""

import hashlib
import json

from django.conf import settings
from django.db import models


class Action(models.TextChoices):
    # FHIR AuditEvent.action codes
    CREATE = "C", "create"
    READ = "R", "read/view/print"
    UPDATE = "U", "update"
    DELETE = "D", "delete"
    EXECUTE = "E", "execute"


class Outcome(models.TextChoices):
    # FHIR AuditEvent.outcome codes
    SUCCESS = "0", "success"
    MINOR_FAILURE = "4", "minor failure"
    SERIOUS_FAILURE = "8", "serious failure"
    MAJOR_FAILURE = "12", "major failure"


class AuditEvent(models.Model):
    """One thing that happened. Rows are never changed or deleted (a database trigger refuses it)."""

    sequence = models.PositiveBigIntegerField(unique=True)
    recorded_at = models.DateTimeField(db_index=True)
    organization = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    api_client = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
    )
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    action = models.CharField(max_length=1, choices=Action.choices)
    event_type = models.CharField(max_length=80, help_text="What was done, e.g. patient-search, token-issued")
    resource_type = models.CharField(max_length=60, blank=True)
    resource_id = models.CharField(max_length=128, blank=True)
    person_euid = models.CharField(max_length=64, blank=True, db_index=True)
    purpose_of_use = models.CharField(max_length=20, blank=True)
    outcome = models.CharField(max_length=2, choices=Outcome.choices, default=Outcome.SUCCESS)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    source_address = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="Codes and ids only, never PHI")
    previous_hash = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]
        indexes = [
            models.Index(fields=["organization", "recorded_at"]),
            models.Index(fields=["event_type", "recorded_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event_type}"

    def content(self) -> dict:
        """The fields the hash covers, in a form that survives a round trip through the database."""
        return {
            "sequence": self.sequence,
            "recorded_at": self.recorded_at.isoformat(timespec="microseconds"),
            "organization": self.organization_id,
            "api_client": self.api_client_id,
            "staff_user": self.staff_user_id,
            "action": self.action,
            "event_type": self.event_type,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "person_euid": self.person_euid,
            "purpose_of_use": self.purpose_of_use,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "source_address": self.source_address,
            "detail": self.detail,
        }

    def compute_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256((self.previous_hash + canonical).encode()).hexdigest()


class ChainHead(models.Model):
    """The single row that holds the chain's last sequence and hash; locking it orders writers."""

    last_sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head at #{self.last_sequence}"


class ChainVerification(models.Model):
    """The result of one verification of the whole chain (run periodically and on demand)."""

    checked_at = models.DateTimeField(auto_now_add=True)
    rows_checked = models.PositiveBigIntegerField()
    first_broken_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)

    def __str__(self) -> str:
        return f"verification of {self.rows_checked} rows at {self.checked_at:%Y-%m-%d %H:%M}"

    @property
    def intact(self) -> bool:
        return self.first_broken_sequence is None
