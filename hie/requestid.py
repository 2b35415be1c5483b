"""Request ids: accepted or generated at the edge, put on every log line, carried into tasks.

The id lives in a context variable so that log records, audit events and task messages all
read the same value without passing it around.
"""

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
TASK_HEADER = "hie_request_id"
# Anything else in the header is replaced: the id is echoed and logged, so it must be inert.
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
logger = logging.getLogger("hie.request")


def get_request_id() -> str | None:
    return current_request_id.get()


@contextmanager
def request_id_context(request_id: str | None) -> Iterator[str]:
    """Run a block under a request id (a new one when none is given)."""
    value = request_id if request_id and VALID_ID.match(request_id) else uuid.uuid4().hex
    token = current_request_id.set(value)
    try:
        yield value
    finally:
        current_request_id.reset(token)


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class RequestIdMiddleware:
    """Accepts or makes the request id, returns it, and writes one access-log line.

    The access line names the path without its query string: FHIR searches carry names
    and birth dates in the query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        with request_id_context(request.headers.get(HEADER)) as request_id:
            request.request_id = request_id
            response = self.get_response(request)
            response[HEADER] = request_id
            logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "client_id": getattr(request, "api_client_id", None),
                },
            )
            return response


@before_task_publish.connect
def _put_request_id_on_task(headers: dict | None = None, **kwargs: object) -> None:
    request_id = current_request_id.get()
    if headers is not None and request_id:
        headers[TASK_HEADER] = request_id


_task_tokens: dict[str, contextvars.Token] = {}


@task_prerun.connect
def _take_request_id_from_task(task_id: str | None = None, task: object = None, **kwargs: object) -> None:
    request_id = getattr(getattr(task, "request", None), TASK_HEADER, None)
    # Eager tasks run inside the caller's context and already carry its id.
    if request_id and task_id:
        _task_tokens[task_id] = current_request_id.set(request_id)


@task_postrun.connect
def _drop_request_id_after_task(task_id: str | None = None, **kwargs: object) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        current_request_id.reset(token)
