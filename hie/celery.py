"""The Celery application of the node, and the retry policy for tasks that call out."""

import os

from celery import Celery, Task
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hie.settings")

app = Celery("hie")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Signal receivers that put request ids on tasks and count them, in web and worker alike.
import hie.metrics  # noqa: E402
import hie.requestid  # noqa: E402, F401


class CallsOutTask(Task):
    """Base for tasks that call another system: bounded retries, exponential backoff, jitter."""

    autoretry_for = (ConnectionError, TimeoutError, OSError)
    max_retries = 5
    retry_backoff = 2
    retry_backoff_max = 600
    retry_jitter = True


@worker_init.connect
def _serve_worker_metrics(**kwargs: object) -> None:
    port = os.environ.get("WORKER_METRICS_PORT")
    if port:
        from prometheus_client import start_http_server

        start_http_server(int(port))
