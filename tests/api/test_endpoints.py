"""The endpoints of docs/connectors/contract.md so far: GET /me, GET /integration, the handshake, error
reports, /events, the schema."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations import audit, configuration, lifecycle
from integrations.choices import EventKind
from integrations.models import Integration, IntegrationEvent
from inventory.models import Product, SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping
from tests.api.helpers import api_routes, assert_error
from tests.fixtures.integrations import GOOD_SETTINGS
from tokens.choices import KeyKind

# --- GET /me ------------------------------------------------------------------------------------------


def test_me_with_an_integration_key(api_client, issue_key, integration, org):
    expires = timezone.now() + timedelta(days=30, microseconds=123)
    issued = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration, expires_at=expires)

    response = api_client(issued).get("/api/v1/me")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "kind": "integration",
        "organization": {"id": str(org.pk), "name": "Acme Outfitters"},
        "integration": {
            "id": str(integration.pk),
            "name": "Acme web shop",
            "status": "connecting",
            "connector": "custom-channel",
        },
        "grants": issued.key.grants,
        "expires_at": body["expires_at"],
    }
    assert "orders:read" in body["grants"]
    assert body["expires_at"].endswith("Z")  # ISO 8601, in UTC
    assert parse_datetime(body["expires_at"]) == expires


def test_me_with_an_org_key(api_client, org_key, org):
    body = api_client(org_key).get("/api/v1/me").json()

    assert body == {
        "kind": "org",
        "organization": {"id": str(org.pk), "name": "Acme Outfitters"},
        "integration": None,
        "grants": ["orders:read", "events:read"],
        "expires_at": None,
    }


def test_me_with_a_global_key(api_client, global_key):
    body = api_client(global_key).get("/api/v1/me").json()

    # A global key belongs to no organization (docs/connectors/contract.md's shape has no case for it: null).
    assert body == {
        "kind": "global",
        "organization": None,
        "integration": None,
        "grants": ["events:read"],
        "expires_at": None,
    }


# --- GET /integration ---------------------------------------------------------------------------------


@pytest.fixture
def strict_integration(org, strict_connector, products):
    """JSON mappings of a connector-specific kind, and SKU and shipping-method mapping rows."""
    integration = configuration.create_integration(
        org, strict_connector, "Strict shop", settings=GOOD_SETTINGS, mappings={"locations": {"WH-1": "East"}}
    )
    method = ShippingMethod.objects.create(organization=org, code="ups-next-day", name="UPS next day")
    ShippingMethodMapping.objects.create(integration=integration, external_code="express", method=method)
    SkuMapping.objects.create(integration=integration, external_sku="EXT-1", product=products["TSHIRT-S"])
    return integration


def test_integration_returns_settings_without_secrets_and_mappings(api_client, issue_key, strict_integration):
    issued = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=strict_integration)

    response = api_client(issued).get("/api/v1/integration")

    assert response.status_code == 200, response.content
    body = response.json()
    assert {"id", "name", "status", "connector", "settings", "mappings"} <= set(body)
    assert body["id"] == str(strict_integration.pk)
    assert (body["name"], body["status"], body["connector"]) == ("Strict shop", "connecting", "strict-shop")
    assert body["settings"] == {"base_url": "https://shop.example.test", "page_size": 50}
    assert body["mappings"] == {
        "locations": {"WH-1": "East"},
        "shipping_methods": {"express": "ups-next-day"},
        "skus": {"EXT-1": "TSHIRT-S"},
    }
    assert GOOD_SETTINGS["api_token"] not in response.content.decode()


def test_integration_mappings_are_its_own_rows_only(
    api_client, issue_key, org, other_org, strict_integration, integration, other_integration, products
):
    # given a sibling integration of the same org and one of another org, each with rows of its own
    SkuMapping.objects.create(integration=integration, external_sku="SIBLING-1", product=products["MUG"])
    sibling_method = ShippingMethod.objects.create(organization=org, code="sibling-std", name="Sibling")
    ShippingMethodMapping.objects.create(integration=integration, external_code="sib", method=sibling_method)
    globex_mug = Product.objects.create(organization=other_org, sku="GLOBEX-MUG", name="Mug", price="3.00")
    SkuMapping.objects.create(integration=other_integration, external_sku="GLOBEX-1", product=globex_mug)

    # when the strict integration asks for itself
    body = api_client(issue_key(kind=KeyKind.INTEGRATION, name="k", integration=strict_integration)).get(
        "/api/v1/integration"
    )

    # then only its own rows appear
    mappings = body.json()["mappings"]
    assert (mappings["skus"], mappings["shipping_methods"]) == (
        {"EXT-1": "TSHIRT-S"},
        {"express": "ups-next-day"},
    )
    assert "SIBLING" not in body.content.decode() and "GLOBEX" not in body.content.decode()


def test_integration_without_mappings_still_has_both_row_kinds(api_client, integration_key):
    body = api_client(integration_key).get("/api/v1/integration").json()

    assert body["mappings"] == {"skus": {}, "shipping_methods": {}}


def test_integration_mappings_cost_the_same_queries_for_any_number_of_rows(
    api_client, issue_key, org, strict_integration
):
    client = api_client(issue_key(kind=KeyKind.INTEGRATION, name="k", integration=strict_integration))
    client.get("/api/v1/integration")  # first use writes last_used_at
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/integration")

    for n in range(20):
        product = Product.objects.create(organization=org, sku=f"MORE-{n}", name=f"More {n}")
        SkuMapping.objects.create(
            integration=strict_integration, external_sku=f"EXT-MORE-{n}", product=product
        )
        method = ShippingMethod.objects.create(organization=org, code=f"m-{n}", name=f"M {n}")
        ShippingMethodMapping.objects.create(
            integration=strict_integration, external_code=f"c-{n}", method=method
        )
    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/integration")

    assert len(response.json()["mappings"]["skus"]) == 21
    assert len(few) == len(many)
    tables = ('FROM "inventory_skumapping"', 'FROM "orders_shippingmethodmapping"')
    assert [sum(table in q["sql"] for q in many) for table in tables] == [1, 1]


@pytest.mark.parametrize("key", ["org_key", "global_key"])
def test_integration_is_404_for_keys_without_an_integration(api_client, request, key):
    response = api_client(request.getfixturevalue(key)).get("/api/v1/integration")
    assert_error(response, 404, "not_found")


# --- POST /integration/connect ------------------------------------------------------------------------


def status_events(integration):
    return list(
        IntegrationEvent.objects.filter(integration=integration, kind=EventKind.STATUS_CHANGED)
        .order_by("pk")
        .values_list("data__from", "data__to", "actor")
    )


def test_connect_from_connecting(api_client, integration_key, integration):
    before = status_events(integration)

    response = api_client(integration_key).post("/api/v1/integration/connect")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "connected"}
    assert Integration.objects.get(pk=integration.pk).status == "connected"
    actor = f"key:{integration_key.key.prefix}"
    assert status_events(integration)[len(before) :] == [("connecting", "connected", actor)]


def test_connect_when_connected_is_a_no_op(api_client, integration_key, integration):
    client = api_client(integration_key)
    client.post("/api/v1/integration/connect")
    before = status_events(integration)

    response = client.post("/api/v1/integration/connect")

    assert response.json() == {"status": "connected"}
    assert status_events(integration) == before


def test_connect_from_error_passes_through_connecting(api_client, integration_key, integration):
    lifecycle.report_error(integration, "boom")
    before = status_events(integration)

    response = api_client(integration_key).post("/api/v1/integration/connect")

    assert response.json() == {"status": "connected"}
    assert [(f, t) for f, t, _ in status_events(integration)[len(before) :]] == [
        ("error", "connecting"),
        ("connecting", "connected"),
    ]


def test_connect_from_not_configured_is_409_conflict(
    api_client, issue_key, org, strict_connector, make_integration
):
    incomplete = make_integration(org, strict_connector, "Incomplete shop")
    assert incomplete.status == "not_configured"
    issued = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=incomplete)

    response = api_client(issued).post("/api/v1/integration/connect")

    assert_error(response, 409, "conflict")
    assert Integration.objects.get(pk=incomplete.pk).status == "not_configured"


def test_connect_when_disabled_is_403(api_client, integration_key, integration):
    lifecycle.disable(integration)

    response = api_client(integration_key).post("/api/v1/integration/connect")

    assert_error(response, 403, "integration_disabled")


@pytest.mark.parametrize("path", ["/api/v1/integration/connect", "/api/v1/integration/error"])
def test_integration_writes_are_404_for_org_keys(api_client, issue_key, org, org_admin, path):
    # With every grant the calls need, so that what answers is the missing integration, not a grant.
    org_key = issue_key(
        kind=KeyKind.ORG, name="k", organization=org, user=org_admin, grants=["exceptions:write"]
    )
    body = {"message": "x"} if path.endswith("/error") else None  # connect takes no body (issue 17)
    assert_error(api_client(org_key).post(path, body, format="json"), 404, "not_found")


# --- POST /integration/error --------------------------------------------------------------------------


def test_error_report_moves_the_integration_to_error(api_client, integration_key, integration):
    response = api_client(integration_key).post(
        "/api/v1/integration/error", {"message": "Shop API token rejected"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "error"}
    integration.refresh_from_db()
    assert (integration.status, integration.last_error) == ("error", "Shop API token rejected")
    assert integration.last_error_at is not None


def test_a_second_error_report_updates_last_error(api_client, integration_key, integration):
    client = api_client(integration_key)
    client.post("/api/v1/integration/error", {"message": "first"}, format="json")

    response = client.post("/api/v1/integration/error", {"message": "second"}, format="json")

    assert response.json() == {"status": "error"}
    assert Integration.objects.get(pk=integration.pk).last_error == "second"


@pytest.mark.parametrize(
    "body", [{}, {"message": ""}, {"message": None}, {"message": "x" * 2001}, {"msg": "x"}]
)
def test_error_report_needs_a_message(api_client, integration_key, integration, body):
    response = api_client(integration_key).post("/api/v1/integration/error", body, format="json")

    details = assert_error(response, 400, "validation_error")
    assert set(details) == {"message", *(set(body) - {"message"})}  # an unknown field is named too
    assert Integration.objects.get(pk=integration.pk).status == "connecting"


def test_error_report_from_not_configured_is_409(
    api_client, issue_key, org, strict_connector, make_integration
):
    incomplete = make_integration(org, strict_connector, "Incomplete shop")
    issued = issue_key(
        kind=KeyKind.INTEGRATION, name="k", integration=incomplete, grants=["exceptions:write"]
    )

    response = api_client(issued).post("/api/v1/integration/error", {"message": "x"}, format="json")

    assert_error(response, 409, "conflict")


# --- GET /events --------------------------------------------------------------------------------------


def add_events(integration, count, *, at=None):
    events = [audit.record_event(integration, EventKind.CONFIG_CHANGED, f"event {i}") for i in range(count)]
    if at is not None:
        IntegrationEvent.objects.filter(pk__in=[e.pk for e in events]).update(created_at=at)
    return events


def visible_event_ids(integration) -> list[str]:
    return [
        str(pk)
        for pk in IntegrationEvent.objects.filter(integration=integration).values_list("pk", flat=True)
    ]


def follow(client, url, params=None):
    pages, response = [], client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        pages.append(response.json())
        if response.json()["next"] is None:
            return pages
        response = client.get(response.json()["next"])


def test_events_paginate_newest_first_without_duplicates(api_client, integration_key, integration):
    add_events(integration, 5)
    add_events(integration, 4, at=timezone.now() - timedelta(hours=1))  # ties on created_at
    expected = visible_event_ids(integration)

    pages = follow(api_client(integration_key), "/api/v1/events", {"limit": 2})

    assert all(len(page["results"]) <= 2 for page in pages)
    rows = [row for page in pages for row in page["results"]]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(expected)  # the request log written meanwhile is newer: not in these pages
    times = [parse_datetime(row["created_at"]) for row in rows]
    assert times == sorted(times, reverse=True)
    assert set(rows[0]) == {"id", "kind", "message", "actor", "data", "integration", "created_at"}


def test_events_page_size_defaults_to_100_and_is_at_most_500(api_client, integration_key, integration):
    IntegrationEvent.objects.bulk_create(
        IntegrationEvent(
            organization=integration.organization, integration=integration, kind="config_changed"
        )
        for _ in range(510)
    )
    client = api_client(integration_key)

    default = client.get("/api/v1/events").json()
    largest = client.get("/api/v1/events", {"limit": 500}).json()
    over = client.get("/api/v1/events", {"limit": 501})

    assert len(default["results"]) == 100
    assert len(largest["results"]) == 500
    assert largest["next"]
    assert over.status_code == 400  # not a silent cap (issue 17)
    assert over.json()["error"]["details"] == {"limit": ["A whole number from 1 to 500."]}


def test_events_updated_since(api_client, integration_key, integration):
    old = add_events(integration, 3, at=timezone.now() - timedelta(days=2))
    since = timezone.now() - timedelta(days=1)
    new = {
        str(pk) for pk in IntegrationEvent.objects.filter(created_at__gte=since).values_list("pk", flat=True)
    }

    pages = follow(
        api_client(integration_key), "/api/v1/events", {"updated_since": since.isoformat(), "limit": 1}
    )

    ids = {row["id"] for page in pages for row in page["results"]}
    assert ids == new
    assert not ids & {str(e.pk) for e in old}


def test_events_list_costs_the_same_queries_for_any_number_of_rows(api_client, integration_key, integration):
    client = api_client(integration_key)
    client.get("/api/v1/events")  # first use writes last_used_at

    add_events(integration, 2)
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/events")
    add_events(integration, 40)
    with CaptureQueriesContext(connection) as many:
        client.get("/api/v1/events")

    assert len(few) == len(many)


# --- OpenAPI ------------------------------------------------------------------------------------------


def test_schema_is_openapi_3_with_the_bearer_scheme_and_the_error_shape(client, db):
    response = client.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200, response.content
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearerKey"].items()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message", "details"}


def test_schema_describes_every_route(client, db):
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    # The schema names path parameters its own way ({pk} is documented as {id}): compare the shapes.
    paths = {re.sub(r"\{[^}]+\}", "{}", path): operations for path, operations in schema["paths"].items()}

    for route in api_routes():
        # A placeholder the routes' id converter accepts (core/ids.py).
        path = route.url(**{p: "987654321" for p in route.params}).replace("987654321", "{}")
        assert path in paths, path
        for method in route.methods:
            operation = paths[path][method.lower()]
            assert operation["security"] == [{"bearerKey": []}], (path, method)
            for status in ("401", "403", "429"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_docs_answer_without_a_key(client, db):
    response = client.get("/api/v1/docs/")
    # Swagger UI's init script, a file of its own for the docs' Content-Security-Policy, names the schema.
    script = client.get("/api/v1/docs/?script=")

    assert response.status_code == script.status_code == 200
    assert b"/api/v1/schema/" in script.content


def test_error_report_raises_one_exception_for_a_person(api_client, integration_key, integration):
    from automations.models import SyncException

    client = api_client(integration_key)
    client.post("/api/v1/integration/error", {"message": "Shop API token rejected"}, format="json")
    client.post("/api/v1/integration/error", {"message": "Shop API token rejected again"}, format="json")

    (raised,) = SyncException.objects.filter(integration=integration)
    assert (raised.kind, raised.status, raised.occurrences) == ("connector_reported", "open", 2)
    assert "rejected again" in raised.message


def test_events_page_through_more_than_a_thousand_rows_sharing_one_timestamp(
    api_client, integration_key, integration
):
    # Given 1,200 events written at the same instant (a bulk write), beside the integration's own
    IntegrationEvent.objects.bulk_create(
        IntegrationEvent(
            organization=integration.organization, integration=integration, kind=EventKind.KEY, message=str(i)
        )
        for i in range(1200)
    )
    IntegrationEvent.objects.filter(integration=integration).update(created_at=timezone.now())
    total = IntegrationEvent.objects.filter(integration=integration).count()
    client = api_client(integration_key)

    # When a connector follows `next` at 500 a page
    seen, url, pages = [], "/api/v1/events?limit=500", 0
    while url:
        body = client.get(url).json()
        seen += [e["id"] for e in body["results"]]
        url, pages = body["next"], pages + 1

    # Then it gets every event once, in three pages (the request events it causes come later than the cut)
    assert pages == 3
    assert len(seen) == len(set(seen)) >= total


def test_a_malformed_cursor_is_a_validation_error(api_client, integration_key):
    response = api_client(integration_key).get("/api/v1/events?cursor=not-a-cursor")

    assert_error(response, 400, "validation_error")
    assert "cursor" in response.json()["error"]["details"]
