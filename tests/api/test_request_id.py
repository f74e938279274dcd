"""
X-Request-Id (issue 17, item 2; core/request_id.py): every answer carries one — new per request, or the
caller's own when well formed — and the same id is the error body's `request_id`, the request log row's
`request_id` and the `[…]` of every log line written for the request.
"""

import io
import logging
import re

import pytest

from core.request_id import RequestIdLogFilter
from integrations.choices import EventKind
from integrations.models import IntegrationEvent
from tests.api.helpers import assert_error

GENERATED = re.compile(r"req_[0-9a-f]{24}")


def test_every_answer_carries_a_new_request_id(api_client, integration_key):
    client = api_client(integration_key)

    ids = [client.get("/api/v1/me")["X-Request-Id"] for _ in range(3)]

    assert all(GENERATED.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == 3


@pytest.mark.parametrize("path", ["/api/v1/schema/", "/admin/login/", "/api/v1/no-such-endpoint", "/"])
def test_answers_outside_the_key_scoped_api_carry_one_too(client, db, path):
    response = client.get(path)

    assert GENERATED.fullmatch(response["X-Request-Id"]), (path, response.status_code)


@pytest.mark.parametrize(
    "sent", ["0f8fa0c2-5b0e-4d7c-9a57-3c8d1a9e2b11", "trace:abc.DEF_123-x", "12345678", "A" * 128]
)
def test_a_well_formed_incoming_id_is_kept(api_client, integration_key, sent):
    response = api_client(integration_key).get("/api/v1/me", HTTP_X_REQUEST_ID=sent)

    assert response["X-Request-Id"] == sent


@pytest.mark.parametrize(
    "sent", ["", "short", "A" * 129, "has space 12345", "-leading-dash", "new\nline-12345", "semi;colon-1234"]
)
def test_a_malformed_incoming_id_is_replaced(api_client, integration_key, sent):
    response = api_client(integration_key).get("/api/v1/me", HTTP_X_REQUEST_ID=sent)

    assert GENERATED.fullmatch(response["X-Request-Id"]), response["X-Request-Id"]


def test_an_error_body_carries_the_answers_request_id(client, db, api_client, integration_key):
    unauthenticated = client.get("/api/v1/me")
    missing = api_client(integration_key).get("/api/v1/orders/999999")
    kept = client.get("/api/v1/me", HTTP_X_REQUEST_ID="support-ticket-42")

    for response, status, code in ((unauthenticated, 401, "invalid_key"), (missing, 404, "not_found")):
        assert_error(response, status, code)
        assert response.json()["error"]["request_id"] == response["X-Request-Id"]
    assert kept.json()["error"]["request_id"] == "support-ticket-42"


def test_the_request_log_row_names_the_request_id(api_client, integration_key):
    response = api_client(integration_key).get("/api/v1/me", HTTP_X_REQUEST_ID="support-ticket-43")

    (row,) = IntegrationEvent.objects.filter(kind=EventKind.API_REQUEST)
    assert row.data["request_id"] == response["X-Request-Id"] == "support-ticket-43"


@pytest.fixture
def console_output():
    """What the console handler of settings.LOGGING writes, captured."""
    (handler,) = [
        h for h in logging.getLogger().handlers if any(isinstance(f, RequestIdLogFilter) for f in h.filters)
    ]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def test_a_log_line_written_for_a_request_names_it(client, db, console_output):
    # Django logs a 4xx answer (django.request, WARNING) once the middlewares have returned it
    response = client.get("/api/v1/no-such-endpoint", HTTP_X_REQUEST_ID="support-ticket-44")

    assert response.status_code == 404
    lines = [line for line in console_output.getvalue().splitlines() if "no-such-endpoint" in line]
    assert lines and all("[support-ticket-44]" in line for line in lines), console_output.getvalue()


def test_a_log_line_written_inside_the_view_names_the_request(client, db, console_output, monkeypatch):
    def log_and_fail(*args, **kwargs):
        logging.getLogger("switchyard.test").warning("inside the view")
        raise RuntimeError("boom")

    monkeypatch.setattr("api.authentication.BearerKeyAuthentication.authenticate", log_and_fail)
    client.raise_request_exception = False

    response = client.get("/api/v1/me", HTTP_X_REQUEST_ID="support-ticket-45")

    assert response.status_code == 500
    assert response.json()["error"]["request_id"] == "support-ticket-45"
    (line,) = [line for line in console_output.getvalue().splitlines() if "inside the view" in line]
    assert "[support-ticket-45]" in line


def test_a_log_line_outside_a_request_says_so(console_output):
    logging.getLogger("switchyard.test").warning("from a task")

    (line,) = [line for line in console_output.getvalue().splitlines() if "from a task" in line]
    assert "[-]" in line
