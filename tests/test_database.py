"""The PostgreSQL backend asks a persistent connection whether it is alive at most once a window."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def health_checks(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite connections are not persistent and have no health check")
    connection.ensure_connection()
    asked = []
    real = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: asked.append(1) or real())
    return asked


def new_request() -> None:
    """What Django does between two requests (request_finished/request_started), then a query."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_a_connection_that_answered_within_the_window_is_not_asked_again(health_checks, settings):
    settings.DB_HEALTH_CHECK_SECONDS = 60
    for _ in range(5):
        new_request()
    assert health_checks == []  # it answered when it was opened, within the window


def test_without_a_window_every_request_asks(health_checks, settings):
    settings.DB_HEALTH_CHECK_SECONDS = 0
    for _ in range(3):
        new_request()
    assert len(health_checks) == 3
