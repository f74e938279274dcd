"""
Finding 10b: `POST /integration/error` moves an integration to `error` and raises an exception, so it needs
the `exceptions:write` grant; a key without it (an `orders:read` key, say) gets 403 `missing_grant` and
changes nothing.
"""

from automations.models import SyncException
from integrations.models import Integration, IntegrationEvent
from tests.api.helpers import assert_error
from tokens.choices import KeyKind

ERROR = "/api/v1/integration/error"


def test_an_orders_read_key_cannot_move_its_integration_to_error(api_client, issue_key, integration):
    # given: a key of the integration that may only read orders
    issued = issue_key(
        kind=KeyKind.INTEGRATION, name="reader", integration=integration, grants=["orders:read"]
    )
    events_before = IntegrationEvent.objects.count()

    # when: it reports an error
    response = api_client(issued).post(ERROR, {"message": "Shop API token rejected"}, format="json")

    # then: refused in the error shape, naming the grant, and nothing changed
    details = assert_error(response, 403, "missing_grant")
    assert details == {"required": ["exceptions:write"]}
    integration.refresh_from_db()
    assert (integration.status, integration.last_error) == ("connecting", "")
    assert not SyncException.objects.exists()
    # Only the request itself is on the trail: no status change, no exception event.
    assert [e.kind for e in IntegrationEvent.objects.order_by("pk")[events_before:]] in ([], ["api_request"])


def test_every_grant_but_exceptions_write_is_not_enough(api_client, issue_key, integration):
    grants = [g for g in integration.connector.recommended_grants if g != "exceptions:write"]
    issued = issue_key(kind=KeyKind.INTEGRATION, name="almost", integration=integration, grants=grants)

    response = api_client(issued).post(ERROR, {"message": "x"}, format="json")

    assert_error(response, 403, "missing_grant")
    assert Integration.objects.get(pk=integration.pk).status == "connecting"


def test_a_key_with_exceptions_write_reports_the_error(api_client, issue_key, integration):
    issued = issue_key(
        kind=KeyKind.INTEGRATION, name="reporter", integration=integration, grants=["exceptions:write"]
    )

    response = api_client(issued).post(ERROR, {"message": "Shop API token rejected"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "error"}
    assert Integration.objects.get(pk=integration.pk).status == "error"
    assert SyncException.objects.filter(integration=integration).count() == 1


def test_the_connectors_recommended_grants_include_exceptions_write(integration):
    # What the admin hands a partner by default keeps working.
    assert "exceptions:write" in integration.connector.recommended_grants


def test_the_schema_names_the_grant(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()

    assert schema["paths"]["/api/v1/integration/error"]["post"]["x-required-grant"] == "exceptions:write"
