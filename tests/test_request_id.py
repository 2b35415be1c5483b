"""Request ids: echoed, generated, and written into the logs."""

import io
import json
import logging

import pytest


def test_given_request_id_is_returned(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"


def test_missing_or_unsafe_request_id_is_replaced(client):
    generated = client.get("/healthz")["X-Request-ID"]
    assert len(generated) == 32
    unsafe = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\r\nX-Injected: 1")["X-Request-ID"]
    assert unsafe != "bad id\r\nX-Injected: 1"
    assert len(unsafe) == 32


@pytest.fixture
def log_lines():
    """The JSON lines the configured root handler writes, captured from its real formatter and filter."""
    handler = logging.getLogger().handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        handler.setStream(previous)


def test_access_log_is_json_with_the_request_id_and_no_query_string(client, log_lines):
    client.get("/healthz?family=Smith&birthdate=1970-01-01", HTTP_X_REQUEST_ID="req-log-1")
    access = [line for line in log_lines() if line["logger"] == "hie.request"]
    assert access[-1]["request_id"] == "req-log-1"
    assert access[-1]["path"] == "/healthz"
    assert "Smith" not in json.dumps(access)
