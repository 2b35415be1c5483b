"""Celery entry points of the document exchange; each calls one service."""

from celery import shared_task

from hie.audit.services import Actor
from hie.exchange import notifications, services


@shared_task(acks_late=True)
def call_custodian_task(call_id: int) -> None:
    # Retries are scheduled by the service (backoff, breaker, deadline), not by Celery's autoretry:
    # the call's state in the database decides, so a task delivered twice does nothing the second time.
    services.run_call(call_id)


@shared_task(acks_late=True)
def replay_call_task(call_id: int) -> None:
    services.run_call(call_id, replay=True)


@shared_task
def sweep_gather_jobs() -> int:
    return services.sweep_jobs()


@shared_task
def replay_dead_letters_task(letter_ids: list[int], staff_user_id: int | None = None) -> int:
    return services.replay_dead_letters(letter_ids=letter_ids, actor=Actor(staff_user_id=staff_user_id))


@shared_task
def dispatch_outbox_task() -> int:
    return notifications.dispatch_outbox()


@shared_task(acks_late=True)
def deliver_task(delivery_id: int) -> None:
    # Like custodian calls, retries are the service's (the delivery row decides), not Celery's.
    notifications.deliver(delivery_id)
