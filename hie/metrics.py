"""Prometheus metrics of the node's own work (HTTP metrics come from django-prometheus).

A worker process counts the tasks it runs; set WORKER_METRICS_PORT to serve them from it.
"""

from celery.signals import before_task_publish, task_failure, task_retry, task_success
from prometheus_client import Counter

TASKS = Counter("hie_tasks", "Celery tasks by name and state", ["task", "state"])


@before_task_publish.connect
def _count_enqueued(sender: str | None = None, **kwargs: object) -> None:
    TASKS.labels(task=sender or "", state="enqueued").inc()


@task_success.connect
def _count_succeeded(sender: object = None, **kwargs: object) -> None:
    TASKS.labels(task=getattr(sender, "name", ""), state="succeeded").inc()


@task_failure.connect
def _count_failed(sender: object = None, **kwargs: object) -> None:
    TASKS.labels(task=getattr(sender, "name", ""), state="failed").inc()


@task_retry.connect
def _count_retried(sender: object = None, **kwargs: object) -> None:
    TASKS.labels(task=getattr(getattr(sender, "request", None), "task", "") or "", state="retried").inc()
