"""docs/connectors/01-concepts.md, "Keys and grants": every request made with a key is recorded under its
integration — one row, one write."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.choices import EventKind
from integrations.models import IntegrationEvent
from tokens import issuing as key_services
from tokens.choices import KeyKind
from tokens.models import ApiKey


def request_log():
    return IntegrationEvent.objects.filter(kind=EventKind.API_REQUEST).order_by("pk")


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("get", "/api/v1/me", None, 200),
        ("get", "/api/v1/events", None, 200),
        ("get", "/api/v1/integration", None, 200),
        ("post", "/api/v1/integration/connect", None, 200),
        ("post", "/api/v1/integration/error", {}, 400),
        ("get", "/api/v1/events?updated_since=never", None, 400),
        ("delete", "/api/v1/me", None, 405),
    ],
)
def test_each_request_with_a_key_writes_one_request_event(
    api_client, integration_key, integration, method, path, body, status
):
    client = api_client(integration_key)

    response = getattr(client, method)(path, body, format="json", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == status, response.content
    (event,) = request_log()
    assert (event.integration_id, event.organization_id) == (integration.pk, integration.organization_id)
    assert event.actor == f"key:{integration_key.key.prefix}"
    data = event.data
    assert set(data) == {"method", "path", "status", "duration_ms", "key", "ip", "request_id"}
    assert data["request_id"] == response["X-Request-Id"]
    assert data["method"] == method.upper()
    assert data["path"] == path.split("?")[0]
    assert data["status"] == status
    assert data["key"] == integration_key.key.prefix
    assert data["ip"] == "203.0.113.9"
    assert isinstance(data["duration_ms"], int | float) and data["duration_ms"] >= 0


def test_a_request_refused_for_a_missing_grant_is_recorded(api_client, issue_key, integration):
    issued = issue_key(kind=KeyKind.INTEGRATION, name="no grants", integration=integration, grants=[])

    api_client(issued).get("/api/v1/events")

    (event,) = request_log()
    assert (event.data["status"], event.data["key"]) == (403, issued.key.prefix)


def test_org_key_requests_are_recorded_under_the_organization(api_client, org_key, org):
    api_client(org_key).get("/api/v1/events")

    (event,) = request_log()
    assert (event.organization_id, event.integration_id) == (org.pk, None)
    assert event.data["key"] == org_key.key.prefix


def refused(integration_key, how) -> str:
    """A bearer string refused in the way `how` names."""
    if how == "wrong secret":
        return f"sy_{integration_key.key.prefix}_{'A' * 43}"
    if how == "unknown prefix":
        return f"sy_zzzzzzzz_{'A' * 43}"
    if how == "revoked":
        key_services.revoke(integration_key.key)
    if how == "expired":
        ApiKey.objects.filter(pk=integration_key.key.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    return integration_key.plaintext


@pytest.mark.parametrize("how", ["none", "wrong secret", "unknown prefix", "revoked", "expired"])
def test_requests_without_a_valid_key_write_nothing(api_client, integration_key, how):
    client = api_client(None if how == "none" else refused(integration_key, how))

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/me")

    assert response.status_code == 401
    assert not request_log().exists()
    assert [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))
    ] == []


def test_unknown_routes_write_nothing(api_client, integration_key):
    api_client(integration_key).get("/api/v1/nope")

    assert not request_log().exists()


def writes(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))
    ]


def test_an_authenticated_get_me_writes_exactly_one_insert(api_client, integration_key):
    client = api_client(integration_key)
    client.get("/api/v1/me")  # the first request also writes last_used_at (at most once a minute)

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me").status_code == 200

    (write,) = writes(queries)
    assert write.startswith('INSERT INTO "integrations_integrationevent"')


def test_the_first_request_adds_only_the_last_used_update(api_client, integration_key):
    with CaptureQueriesContext(connection) as queries:
        api_client(integration_key).get("/api/v1/me")

    tables = sorted(sql.split('"')[1] for sql in writes(queries))
    assert tables in (
        ["integrations_integrationevent", "tokens_apikey"],
        # last activity is written at most once a minute too, judged from the loaded integration
        ["integrations_integration", "integrations_integrationevent", "tokens_apikey"],
    )


def test_a_genuine_key_refused_for_a_disabled_integration_is_recorded(
    api_client, integration_key, integration
):
    from integrations import lifecycle

    lifecycle.disable(integration)

    response = api_client(integration_key).get("/api/v1/me")

    assert response.status_code == 403
    (event,) = request_log()
    assert event.integration_id == integration.pk
    assert (event.data["status"], event.data["key"]) == (403, integration_key.key.prefix)
