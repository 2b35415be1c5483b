"""Fixtures shared by the whole suite: members with API clients, tokens, and real services."""

import base64
import importlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection

from hie.celery import app as celery_app
from hie.hl7v2.services import forget_members
from hie.orgs.services import IssuedClient, create_member

ALL_SCOPES = sorted(django_settings.FHIR_SCOPES)
_append_only = importlib.import_module("hie.audit.migrations.0002_append_only")


def need_service(reason: str) -> None:
    """Skip for want of a service on a developer machine; in CI that is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must provide it")
    pytest.skip(reason)


TEST_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
TEST_QUEUE = f"hie-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_inline_unless_a_test_starts_a_worker() -> None:
    # Broker and queue are fixed before the first task is sent: Celery caches its routing.
    celery_app.conf.broker_url = TEST_BROKER_URL
    celery_app.conf.task_default_queue = TEST_QUEUE
    django_settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True


@pytest.fixture(autouse=True)
def _uploads_in_a_temporary_folder(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    # Rate-limit counters and drain marks of one test must not reach the next (ids repeat), nor
    # the MLLP listener's members of one test (a facility name is reused with another member).
    cache.clear()
    forget_members()


@pytest.fixture
def audit_rows_flushable(transactional_db, django_db_blocker):
    """For tests on a committed (transactional) database that write audit events.

    SQLite empties tables with DELETE, which the audit table's append-only trigger refuses:
    the test's audit rows are removed with the trigger lifted for a moment, before the flush.
    """
    yield
    if connection.vendor == "sqlite":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            for statement in _append_only.SQLITE_DOWN:
                cursor.execute(statement)
            cursor.execute("DELETE FROM audit_auditevent")
            for statement in _append_only.SQLITE_UP:
                cursor.execute(statement)


@pytest.fixture
def make_member(db):
    counter = iter(range(1, 10_000))

    def make(
        name: str | None = None, *, scopes: list[str] | None = None, system: str | None = None, facility: str = ""
    ) -> IssuedClient:
        n = next(counter)
        return create_member(
            name=name or f"Member {n} {uuid.uuid4().hex[:6]}",
            identifier_systems=[system or f"urn:oid:2.16.840.1.113883.3.{uuid.uuid4().int % 10**6}.{n}"],
            scopes=ALL_SCOPES if scopes is None else scopes,
            hl7_facility=facility,
        )

    return make


def basic_auth(client_id: str, client_secret: str) -> str:
    pair = f"{client_id}:{client_secret}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@pytest.fixture
def get_token(client):
    """Ask the real token endpoint for an access token; returns the parsed response."""

    def get(issued: IssuedClient, scope: str | None = None) -> dict:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        response = client.post(
            "/oauth/token", form, HTTP_AUTHORIZATION=basic_auth(issued.client.client_id, issued.client_secret)
        )
        assert response.status_code == 200, response.content
        return response.json()

    return get


# --- a real Celery worker on Redis -------------------------------------------------------


@pytest.fixture(scope="session")
def broker_url() -> str:
    try:
        redis.Redis.from_url(TEST_BROKER_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError):
        need_service("Redis is not reachable for the Celery broker")
    return TEST_BROKER_URL


def database_url_of_test_database() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(broker_url, django_db_setup, django_db_blocker, tmp_path_factory):
    """A separate `celery worker` process on the test database, on a queue of its own."""
    queue = TEST_QUEUE
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with django_db_blocker.unblock():
        database_url = database_url_of_test_database()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "DB_CONN_MAX_AGE": "0",
        # Custodian calls stay well inside a test's patience: at most 3 attempts of 3 s each.
        "CUSTODIAN_TIMEOUT_SECONDS": "3",
        "EXCHANGE_MAX_ATTEMPTS": "3",
        "EXCHANGE_BACKOFF_SECONDS": "0.5",
    }
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hie",
                "worker",
                "-Q",
                queue,
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=django_settings.BASE_DIR,
        )
    deadline = time.monotonic() + 60
    while " ready." not in log_path.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"the Celery worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield {"log_path": log_path, "queue": queue, "broker_url": broker_url, "process": worker}
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.fixture
def celery_worker(celery_worker_process):
    """Send this test's tasks to the real worker instead of running them inline.

    Yields the path of the worker's log file (JSON lines).
    """
    celery_app.conf.task_always_eager = False
    django_settings.CELERY_TASK_ALWAYS_EAGER = False
    try:
        yield celery_worker_process["log_path"]
    finally:
        celery_app.conf.task_always_eager = True
        django_settings.CELERY_TASK_ALWAYS_EAGER = True


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, explain=None):
    """Poll until predicate() is truthy; return its value or fail, saying what `explain()` reports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail("timed out waiting for the condition" + (f":\n{explain()}" if explain else ""))


def worker_log_problems(log_path: Path, limit: int = 30) -> str:
    """The worker's last warnings and errors, for a failing test's message."""
    lines = [line for line in log_path.read_text().splitlines() if '"WARNING"' in line or '"ERROR"' in line
             or "Traceback" in line or "Error" in line]  # fmt: skip
    return "\n".join(lines[-limit:]) or "(the worker logged no warning or error)"


def _loopback(state_class: type, start: object):
    """Start loopback servers of one kind on demand (each with fresh state); all stop after the test."""
    servers = []

    def make(**options) -> object:
        state = state_class(**options)
        servers.append(start(state))
        return state

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def custodian_server():
    """Members' FHIR servers holding documents, with injectable faults (tests/fhir/custodian.py)."""
    from tests.fhir import custodian

    yield from _loopback(custodian.Custodian, custodian.start)


@pytest.fixture
def webhook_receiver():
    """Members' webhook receivers that check signatures and drop repeats (tests/webhook.py)."""
    from tests import webhook

    yield from _loopback(webhook.Receiver, webhook.start)
