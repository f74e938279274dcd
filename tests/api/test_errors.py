"""docs/connectors/contract.md, "Conventions": every error has one shape, {"error": {"code", "message",
"details"}}, with a stable code."""

import logging

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from api import errors
from core.errors import DomainError
from integrations import lifecycle, workflows
from integrations.webhooks import subscriptions
from orders.services import OrderConflict
from tests.api.helpers import api_routes, assert_error


@pytest.fixture
def connector_client(integration_key):
    """A client as a connector is: a bearer key, no cookies, and Django's CSRF checks on."""
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {integration_key.plaintext}")


def test_malformed_json_is_400_validation_error(connector_client):
    response = connector_client.post(
        "/api/v1/integration/error", '{"message": "half', content_type="application/json"
    )
    assert_error(response, 400, "validation_error")


def test_a_body_that_is_not_an_object_is_400_validation_error(connector_client):
    response = connector_client.post("/api/v1/integration/error", "[1, 2]", content_type="application/json")
    assert_error(response, 400, "validation_error")


def test_wrong_content_type_is_415_unsupported_media_type(connector_client):
    response = connector_client.post("/api/v1/integration/error", "message=x", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_form_encoded_body_is_415(connector_client):
    response = connector_client.post("/api/v1/integration/error", {"message": "x"})  # multipart
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/me/", "/api/v1/events/123/nope", "/api/v1/"])
def test_unknown_route_is_404_not_found_json(connector_client, method, path):
    # A real client sends no CSRF cookie: the catch-all must not answer 403 HTML for writes.
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(connector_client, method)(path, **body)

    assert_error(response, 404, "not_found")


def test_unknown_route_without_a_key_is_404_json(client):
    assert_error(client.get("/api/v1/nope"), 404, "not_found")


@pytest.mark.parametrize(
    "method,path",
    [
        ("delete", "/api/v1/me"),
        ("post", "/api/v1/me"),
        ("put", "/api/v1/integration"),
        ("get", "/api/v1/integration/connect"),
        ("get", "/api/v1/integration/error"),
        ("post", "/api/v1/events"),
        ("delete", "/api/v1/events"),
    ],
)
def test_method_not_allowed_is_405(connector_client, method, path):
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(connector_client, method)(path, **body)

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"]


def test_every_route_answers_405_for_methods_it_does_not_have(api_client, integration_key):
    client = api_client(integration_key)
    for route in api_routes():
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - set(route.methods):
            response = getattr(client, method.lower())(route.url(), {}, format="json")
            assert response.status_code == 405, (route.name, method, response.content)
            assert_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "1"])
def test_invalid_updated_since_is_400_naming_the_field(api_client, integration_key, value):
    response = api_client(integration_key).get("/api/v1/events", {"updated_since": value})

    details = assert_error(response, 400, "validation_error")
    assert list(details) == ["updated_since"]


def test_validation_errors_name_each_field(api_client, integration_key):
    response = api_client(integration_key).post("/api/v1/integration/error", {"message": ""}, format="json")

    details = assert_error(response, 400, "validation_error")
    assert list(details) == ["message"]
    assert all(isinstance(m, str) for m in details["message"])


def test_unhandled_exception_is_500_internal_error_without_the_traceback(
    integration_key, monkeypatch, caplog
):
    def explode(*args, **kwargs):
        raise RuntimeError("db password is hunter2")

    monkeypatch.setattr(lifecycle, "handshake", explode)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {integration_key.plaintext}")

    with caplog.at_level(logging.ERROR):
        response = client.post("/api/v1/integration/connect")

    assert_error(response, 500, "internal_error")
    body = response.content.decode()
    assert "hunter2" not in body
    assert "Traceback" not in body
    assert "RuntimeError" not in body
    # ...but the traceback is logged for us.
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


def test_errors_outside_the_views_answer_in_the_shape_too():
    request = RequestFactory().get("/api/v1/orders")

    assert_error(errors.handler500(request), 500, "internal_error")
    assert_error(errors.handler404(request, None), 404, "not_found")


def test_error_codes_are_the_catalogue_of_api_md():
    documented = {
        "validation_error": 400,
        "invalid_key": 401,
        "key_expired": 401,
        "key_revoked": 401,
        "missing_grant": 403,
        "integration_disabled": 403,
        "workflow_disabled": 403,
        "ip_not_allowed": 403,
        "not_found": 404,
        "idempotency_in_progress": 409,
        "conflict": 409,
        "payload_too_large": 413,
        "idempotency_conflict": 422,
        "rate_limited": 429,
    }

    assert documented.items() <= errors.CODES.items()
    with pytest.raises(ValueError):
        errors.ApiError("no_such_code", "x")


def test_nested_validation_details_are_flattened_to_dotted_paths():
    detail = {
        "lines": [{}, {"sku": ["unknown SKU"], "quantity": ["too big"]}],
        "non_field_errors": ["bad order"],
        "customer": {"email": ["not an e-mail"]},
    }

    assert errors.flatten(detail) == {
        "lines.1.sku": ["unknown SKU"],
        "lines.1.quantity": ["too big"],
        "__all__": ["bad order"],
        "customer.email": ["not an e-mail"],
    }


def test_options_on_every_route_answers_without_error(api_client, integration_key, issue_key, integration):
    # DRF's OPTIONS answer checks the write actions too: with and without their grants.
    no_grants = issue_key(kind="integration", name="none", integration=integration, grants=[])
    for key in (integration_key, no_grants):
        client = api_client(key)
        for route in api_routes():
            response = client.options(route.url())
            assert response.status_code == 200, (route.name, response.content)


@pytest.mark.parametrize(
    "refusal, status, code, details",
    [
        (
            lambda: lifecycle.TransitionRefused("Not from here.", code="transition_refused"),
            409,
            "conflict",
            {},
        ),
        (lambda: workflows.WorkflowDisabled("Switched off."), 403, "workflow_disabled", {}),
        (
            lambda: subscriptions.MissingEventGrant(["orders:read"]),
            403,
            "missing_grant",
            {"required": ["orders:read"]},
        ),
        (lambda: subscriptions.SubscriptionConflict("Full.", {"limit": 3}), 409, "conflict", {"limit": 3}),
        (lambda: OrderConflict("Already shipped."), 409, "conflict", {}),
    ],
)
def test_a_domain_error_is_answered_with_its_code_message_and_details(
    api_client, integration_key, monkeypatch, refusal, status, code, details
):
    # No view catches it: api/errors.py translates every DomainError the same way.
    error = refusal()

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(lifecycle, "handshake", refuse)

    response = api_client(integration_key).post("/api/v1/integration/connect")

    assert assert_error(response, status, code) == details
    assert response.json()["error"]["message"] == error.message


def test_a_domain_error_names_a_code_of_the_catalogue():
    with pytest.raises(TypeError):

        class Refused(DomainError):
            api_code = "no_such_code"

    assert lifecycle.TransitionRefused.api_code in errors.CODES
