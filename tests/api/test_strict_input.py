"""
Strict by default (issue 17, item 3), case by case: unknown and read-only body fields at any depth, batches
naming one key twice, `limit` over the maximum, times without a zone, unknown query parameters. Each is a 400
`validation_error` naming what it refuses, the way other field errors are named, and nothing is written.
The walk over the whole OpenAPI document is tests/api/test_strict_walk.py.
"""

import pytest

from inventory.models import InventoryLevel, Location, Product
from orders.models import Order
from tokens import grants
from tokens.choices import KeyKind


@pytest.fixture
def key_for(issue_key):
    def make(integration):
        return issue_key(kind=KeyKind.INTEGRATION, name="key", integration=integration, grants=grants.GRANTS)

    return make


@pytest.fixture
def shop(api_client, key_for, integration, products, standard_method):
    return api_client(key_for(integration))


@pytest.fixture
def tpl(api_client, key_for, warehouse_integration, warehouse, stock):
    return api_client(key_for(warehouse_integration))


@pytest.fixture
def org_client(api_client, issue_key, org, org_admin):
    return api_client(
        issue_key(kind=KeyKind.ORG, name="ops", organization=org, user=org_admin, grants=grants.GRANTS)
    )


def refusal(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error", error
    return error["details"]


# --- unknown body fields --------------------------------------------------------------------------------


def test_an_unknown_field_is_refused_at_the_top_with_the_allowed_ones(shop, org):
    response = shop.post("/api/v1/locations", {"name": "Back room", "colour": "red"}, format="json")

    details = refusal(response)
    assert list(details) == ["colour"]
    assert details["colour"][0].startswith("Unknown field (allowed: name, kind, address")
    assert not Location.objects.filter(name="Back room").exists()


def test_unknown_fields_in_nested_objects_are_named_by_their_path(shop, order_body):
    body = {
        **order_body,
        "totals": {"shipping": "1.00", "tips": "2.00"},
        "lines": [{**order_body["lines"][0], "colour": "red"}, order_body["lines"][0]],
    }

    details = refusal(shop.post("/api/v1/orders", body, format="json"))

    assert set(details) == {"totals.tips", "lines.0.colour"}
    assert not Order.objects.exists()


def test_unknown_fields_come_with_the_other_field_errors(shop, order_body):
    body = {**order_body, "lines": [{**order_body["lines"][0], "quantity": 0}], "colour": "red"}

    details = refusal(shop.post("/api/v1/orders", body, format="json"))

    assert set(details) == {"colour", "lines.0.quantity"}


def test_a_read_only_field_is_refused_as_such(org_client, org):
    response = org_client.post(
        "/api/v1/products", {"sku": "NEW-1", "name": "New", "id": "7", "archived_at": None}, format="json"
    )

    details = refusal(response)
    assert details == {
        "id": ["Read-only: it cannot be set."],
        "archived_at": ["Read-only: it cannot be set."],
    }
    assert not Product.objects.filter(sku="NEW-1").exists()


def test_an_unknown_field_in_a_batch_row_names_the_row(org_client, org):
    rows = [{"sku": "NEW-1", "name": "One"}, {"sku": "NEW-2", "name": "Two", "colour": "red"}]

    details = refusal(org_client.post("/api/v1/products/bulk", {"products": rows}, format="json"))

    assert list(details) == ["products.1.colour"]
    assert not Product.objects.filter(sku__startswith="NEW-").exists()


def test_a_stock_row_with_an_unknown_field_writes_no_count(tpl, warehouse, products):
    before = sorted(InventoryLevel.objects.values_list("product_id", "on_hand"))
    items = [{"sku": "MUG", "on_hand": 1}, {"sku": "TSHIRT-S", "on_hand": 2, "reserved": 1}]

    details = refusal(
        tpl.post("/api/v1/inventory", {"location": str(warehouse.pk), "items": items}, format="json")
    )

    assert list(details) == ["items.1.reserved"]
    assert sorted(InventoryLevel.objects.values_list("product_id", "on_hand")) == before


def test_an_operation_that_takes_no_body_refuses_every_field_and_does_nothing(shop, integration):
    status = integration.status

    details = refusal(shop.post("/api/v1/integration/connect", {"force": True}, format="json"))

    assert details == {"force": ["Unknown field."]}
    integration.refresh_from_db()
    assert integration.status == status


def test_an_operation_that_takes_no_body_still_takes_none_or_an_empty_object(shop):
    assert shop.post("/api/v1/integration/connect").status_code == 200
    assert shop.post("/api/v1/integration/connect", {}, format="json").status_code == 200


# --- batches naming one key twice -----------------------------------------------------------------------


def test_a_stock_push_naming_a_sku_twice_is_refused_naming_the_rows(tpl, warehouse, products):
    before = sorted(InventoryLevel.objects.values_list("product_id", "on_hand"))
    items = [{"sku": "MUG", "on_hand": 1}, {"sku": "TSHIRT-S", "on_hand": 2}, {"sku": "MUG", "on_hand": 3}]

    details = refusal(
        tpl.post("/api/v1/inventory", {"location": str(warehouse.pk), "items": items}, format="json")
    )

    assert set(details) == {"items.0.sku", "items.2.sku"}
    assert "rows 0, 2" in details["items.0.sku"][0] and "MUG" in details["items.0.sku"][0]
    assert sorted(InventoryLevel.objects.values_list("product_id", "on_hand")) == before


def test_a_bulk_upsert_naming_a_sku_twice_is_refused_naming_the_rows(org_client, org):
    rows = [
        {"sku": "NEW-1", "name": "One"},
        {"sku": "NEW-2", "name": "Two"},
        {"sku": "NEW-1\u200b", "name": "One again, with a zero-width space"},  # the same SKU once stored
    ]

    details = refusal(org_client.post("/api/v1/products/bulk", {"products": rows}, format="json"))

    assert set(details) == {"products.0.sku", "products.2.sku"}
    assert not Product.objects.filter(sku__startswith="NEW-").exists()


# --- the query of a list --------------------------------------------------------------------------------


def test_a_limit_over_the_maximum_is_refused_not_capped(org_client):
    assert org_client.get("/api/v1/products", {"limit": 500}).status_code == 200

    details = refusal(org_client.get("/api/v1/products", {"limit": 1000}))

    assert details == {"limit": ["A whole number from 1 to 500."]}
    assert refusal(org_client.get("/api/v1/products", {"limit": "9" * 5000})) == details


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "2026-01-01T00:00", "2026-01-01"])
def test_a_time_without_a_zone_is_refused(org_client, since):
    details = refusal(org_client.get("/api/v1/products", {"updated_since": since}))

    assert list(details) == ["updated_since"]
    assert "time zone" in details["updated_since"][0]


@pytest.mark.parametrize(
    "since", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+02:00", "2026-01-01T00:00:00.5-05:30"]
)
def test_a_time_with_its_zone_is_taken(org_client, since):
    assert org_client.get("/api/v1/products", {"updated_since": since}).status_code == 200


def test_a_shipment_time_without_a_zone_is_refused(api_client, key_for, warehouse_integration):
    body = {
        "shipping_request": "1",
        "lines": [{"sku": "MUG", "quantity": 1}],
        "shipped_at": "2026-01-01T10:00",
    }

    details = refusal(
        api_client(key_for(warehouse_integration)).post("/api/v1/fulfillments", body, format="json")
    )

    assert "time zone" in details["shipped_at"][0]


def test_unknown_query_parameters_are_refused_naming_each(org_client):
    details = refusal(org_client.get("/api/v1/products", {"sku": "MUG", "colour": "red", "page": "2"}))

    assert details == {"colour": ["Unknown query parameter."], "page": ["Unknown query parameter."]}


def test_the_parameters_a_list_reads_are_taken(org_client, products):
    query = {"sku": "MUG", "active": "true", "include_archived": "false", "limit": "5", "format": "json"}

    response = org_client.get("/api/v1/products", {**query, "updated_since": "2020-01-01T00:00:00Z"})

    assert response.status_code == 200, response.content
    assert [row["sku"] for row in response.json()["results"]] == ["MUG"]
    cursor = org_client.get("/api/v1/products", {"limit": 1}).json()["next"]
    assert org_client.get(cursor).status_code == 200
