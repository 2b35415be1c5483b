"""The HL7 v2 inbox: every message the listener received, stored before it was acknowledged."""

from django.db import models
from django.db.models import Q


class MessageState(models.TextChoices):
    RECEIVED = "received", "received, waiting to be processed"
    PROCESSED = "processed"
    DUPLICATE = "duplicate", "repeated control id, acknowledged and not applied again"
    STORED = "stored", "stored only (a type the index does not act on)"
    FAILED = "failed", "processing failed"
    ERROR = "error", "refused with AE"
    REJECTED = "rejected", "refused with AR"


class InboundMessage(models.Model):
    """One message as received (raw bytes kept), with the acknowledgement the node gave it."""

    organization = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="inbound_messages"
    )
    sending_facility = models.CharField(max_length=180, blank=True)
    control_id = models.CharField(max_length=199, blank=True)
    message_type = models.CharField(max_length=30, blank=True, help_text="e.g. ADT^A01")
    version = models.CharField(max_length=12, blank=True)
    raw = models.BinaryField()
    peer = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=10, choices=MessageState.choices)
    ack_code = models.CharField(max_length=2)
    error = models.CharField(max_length=300, blank=True, help_text="Field and reason, never the values")
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A control id repeated by the same facility is the same message sent again.
            models.UniqueConstraint(
                fields=["sending_facility", "control_id"],
                condition=Q(ack_code="AA") & ~Q(state="duplicate"),
                name="inbound_message_accepted_once",
            )
        ]
        indexes = [models.Index(fields=["organization", "state", "id"]), models.Index(fields=["state", "received_at"])]

    def __str__(self) -> str:
        return f"message {self.pk} ({self.message_type}, {self.state})"
