"""Celery entry points of the HL7 v2 intake."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from hie.hl7v2 import services
from hie.hl7v2.models import InboundMessage, MessageState


@shared_task
def process_inbox(organization_id: int) -> int:
    return services.process_inbox(organization_id)


@shared_task
def sweep_inbox(older_than_seconds: int = 60) -> int:
    """Start processing for organizations whose messages wait longer than they should (a lost task)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    organizations = set(
        InboundMessage.objects.filter(state=MessageState.RECEIVED, received_at__lt=cutoff).values_list(
            "organization_id", flat=True
        )
    )
    for organization_id in organizations:
        process_inbox.delay(organization_id)
    return len(organizations)
