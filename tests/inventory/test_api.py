"""The catalog and stock endpoints of API.md: products, locations, POST/GET /inventory, /availability."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import Connector, Integration, OutboxEvent
from inventory.models import ChannelLocation, InventoryBuffer, InventoryLevel, Location, Product, SkuMapping
from tests.api.helpers import assert_error
from tokens.choices import KeyKind

ALL_GRANTS = [
    "products:read",
    "products:write",
    "locations:read",
    "locations:write",
    "inventory:read",
    "inventory:write",
]


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def key_for(issue_key):
    """`key_for(integration, *grants)` → an integration key; no grants: the connector's recommended ones."""

    def make(integration, *grants):
        return issue_key(
            kind=KeyKind.INTEGRATION,
            name=f"{integration.name} key",
            integration=integration,
            grants=list(grants) or None,
        )

    return make


@pytest.fixture
def channel_client(api_client, integration_key):
    """The custom channel "Acme web shop": products:read and inventory:read, no writes here."""
    return api_client(integration_key)


@pytest.fixture
def tpl_client(api_client, key_for, warehouse_integration):
    """The 3PL that manages `warehouse`: locations and inventory read/write, products:read."""
    return api_client(key_for(warehouse_integration))


@pytest.fixture
def erp(org, make_integration):
    integration = make_integration(
        org, Connector.objects.get(organization=None, key="custom-erp"), "Acme ERP"
    )
    assert integration.flow_products_in  # an ERP is a catalog source by default
    return integration


@pytest.fixture
def erp_client(api_client, key_for, erp):
    return api_client(key_for(erp))


@pytest.fixture
def org_client(api_client, issue_key, org, org_admin):
    return api_client(
        issue_key(kind=KeyKind.ORG, name="Acme ops", organization=org, user=org_admin, grants=ALL_GRANTS)
    )


@pytest.fixture
def globex_product(other_org):
    return Product.objects.create(organization=other_org, sku="GLOBEX-1", name="Globex widget")


@pytest.fixture
def globex_location(other_org):
    return Location.objects.create(organization=other_org, name="Globex DC")


def switch(integration, flow, on):
    Integration.objects.filter(pk=integration.pk).update(**{f"flow_{flow}": on})


def all_pages(client, url, max_pages=20) -> list[dict]:
    rows = []
    for _ in range(max_pages):
        if not url:
            break
        response = client.get(url)
        assert response.status_code == 200, response.content
        rows += response.json()["results"]
        url = response.json()["next"]
    assert not url, "still paging"
    return rows


def query_count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries)


# --- products -----------------------------------------------------------------------------------------


def test_integration_key_lists_the_whole_org_catalog(channel_client, products, globex_product):
    response = channel_client.get("/api/v1/products")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is None
    assert {row["sku"] for row in body["results"]} == {"TSHIRT-S", "TSHIRT-M", "MUG"}
    mug = next(row for row in body["results"] if row["sku"] == "MUG")
    assert mug == {
        "id": str(products["MUG"].pk),
        "sku": "MUG",
        "name": "Mug",
        "barcode": "",
        "price": "8.00",
        "weight": None,
        "active": True,
        "updated_at": mug["updated_at"],
    }
    assert mug["updated_at"].endswith("Z")


def test_product_list_filters_by_sku_and_updated_since(channel_client, products):
    Product.objects.filter(sku="MUG").update(updated_at=timezone.now() + timedelta(hours=1))
    since = (timezone.now() + timedelta(minutes=30)).isoformat()

    by_sku = channel_client.get("/api/v1/products", {"sku": "TSHIRT-M"}).json()["results"]
    recent = channel_client.get("/api/v1/products", {"updated_since": since}).json()["results"]

    assert [row["sku"] for row in by_sku] == ["TSHIRT-M"]
    assert [row["sku"] for row in recent] == ["MUG"]


def test_product_list_pages_with_limit_and_next(channel_client, org):
    Product.objects.bulk_create(Product(organization=org, sku=f"P-{i:03}", name="p") for i in range(7))

    first = channel_client.get("/api/v1/products", {"limit": 3}).json()
    rows = all_pages(channel_client, "/api/v1/products?limit=3")

    assert len(first["results"]) == 3 and first["next"]
    assert sorted(row["sku"] for row in rows) == [f"P-{i:03}" for i in range(7)]


def test_product_detail_and_another_orgs_product_is_404(channel_client, products, globex_product):
    mine = channel_client.get(f"/api/v1/products/{products['MUG'].pk}")
    theirs = channel_client.get(f"/api/v1/products/{globex_product.pk}")
    garbage = channel_client.get("/api/v1/products/not-an-id")

    assert mine.status_code == 200 and mine.json()["sku"] == "MUG"
    assert_error(theirs, 404, "not_found")
    assert_error(garbage, 404, "not_found")


def test_post_product_upserts_by_sku(erp_client, org):
    body = {"sku": "HAT", "name": "Hat", "price": "20.00", "weight": "0.250", "barcode": "400123"}

    first = erp_client.post("/api/v1/products", body, format="json")
    again = erp_client.post("/api/v1/products", {**body, "price": "18.5"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["price"] == "18.50"
    assert first.json()["weight"] == "0.250"
    product = Product.objects.get(organization=org, sku="HAT")
    assert str(product.price) == "18.50"
    assert list(
        OutboxEvent.objects.filter(object_type="product", object_id=str(product.pk)).values_list(
            "type", flat=True
        )
    ) == ["product.created", "product.updated"]


def test_post_product_with_an_org_key(org_client, products):
    response = org_client.post("/api/v1/products", {"sku": "MUG", "name": "Big mug"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(products["MUG"].pk)
    assert response.json()["name"] == "Big mug"


def test_product_write_needs_the_grant(channel_client, products):
    response = channel_client.post("/api/v1/products", {"sku": "HAT", "name": "Hat"}, format="json")
    patch = channel_client.patch(f"/api/v1/products/{products['MUG'].pk}", {"name": "x"}, format="json")

    assert assert_error(response, 403, "missing_grant") == {"required": ["products:write"]}
    assert_error(patch, 403, "missing_grant")
    assert not Product.objects.filter(sku="HAT").exists()


def test_product_write_needs_the_products_in_workflow(erp_client, erp, products):
    switch(erp, "products_in", False)

    post = erp_client.post("/api/v1/products", {"sku": "HAT", "name": "Hat"}, format="json")
    bulk = erp_client.post(
        "/api/v1/products/bulk", {"products": [{"sku": "HAT", "name": "Hat"}]}, format="json"
    )
    patch = erp_client.patch(f"/api/v1/products/{products['MUG'].pk}", {"name": "x"}, format="json")

    for response in (post, bulk, patch):
        assert_error(response, 403, "workflow_disabled")
    assert not Product.objects.filter(sku="HAT").exists()


def test_post_product_validation_names_the_fields(erp_client):
    response = erp_client.post("/api/v1/products", {"sku": "", "price": "-1", "weight": "x"}, format="json")

    details = assert_error(response, 400, "validation_error")
    assert set(details) == {"sku", "name", "price", "weight"}


def test_patch_product_changes_fields_but_not_the_sku(erp_client, products):
    mug = products["MUG"]

    response = erp_client.patch(
        f"/api/v1/products/{mug.pk}", {"name": "Mug XL", "sku": "OTHER"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Mug XL" and response.json()["sku"] == "MUG"
    mug.refresh_from_db()
    assert (mug.name, mug.sku) == ("Mug XL", "MUG")
    assert OutboxEvent.objects.filter(type="product.updated", object_id=str(mug.pk)).count() == 1


def test_patch_another_orgs_product_is_404(erp_client, globex_product):
    response = erp_client.patch(f"/api/v1/products/{globex_product.pk}", {"name": "mine now"}, format="json")

    assert_error(response, 404, "not_found")
    globex_product.refresh_from_db()
    assert globex_product.name == "Globex widget"


def test_put_is_not_offered(erp_client, products):
    response = erp_client.put(
        f"/api/v1/products/{products['MUG'].pk}", {"sku": "MUG", "name": "x"}, format="json"
    )

    assert_error(response, 405, "method_not_allowed")


# --- products/bulk ------------------------------------------------------------------------------------


def test_bulk_upsert_counts_created_and_updated(erp_client, org, products):
    items = [
        {"sku": "MUG", "name": "Mug", "price": "9.00"},  # changed
        {"sku": "TSHIRT-S", "name": "T-shirt S", "price": "12.50"},  # unchanged: neither created nor updated
        {"sku": "NEW-1", "name": "New one"},
        {"sku": "NEW-2", "name": "New two", "active": False},
    ]

    response = erp_client.post("/api/v1/products/bulk", {"products": items}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2, "updated": 1}
    assert Product.objects.filter(organization=org).count() == 5
    assert not Product.objects.get(sku="NEW-2").active


def test_bulk_of_1000_products_takes_a_bounded_number_of_queries(
    erp_client, org, django_assert_max_num_queries
):
    Product.objects.bulk_create(Product(organization=org, sku=f"SKU-{i:04}", name="old") for i in range(500))
    items = [
        {"sku": f"SKU-{i:04}", "name": "new", "price": "1.00"} for i in range(1000)
    ]  # 500 updates, 500 new

    with django_assert_max_num_queries(16):
        response = erp_client.post("/api/v1/products/bulk", {"products": items}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"created": 500, "updated": 500}


def test_bulk_over_1000_products_is_413(erp_client):
    items = [{"sku": f"SKU-{i}", "name": "x"} for i in range(1001)]

    response = erp_client.post("/api/v1/products/bulk", {"products": items}, format="json")

    assert_error(response, 413, "payload_too_large")
    assert not Product.objects.exists()


def test_bulk_validation_names_the_item_and_field(erp_client):
    items = [{"sku": f"SKU-{i}", "name": "x"} for i in range(5)]
    items[3] = {"sku": "", "name": "x"}
    items[4]["price"] = "cheap"

    response = erp_client.post("/api/v1/products/bulk", {"products": items}, format="json")

    details = assert_error(response, 400, "validation_error")
    assert set(details) == {"products.3.sku", "products.4.price"}
    assert not Product.objects.exists()


def test_bulk_body_must_have_products(erp_client):
    response = erp_client.post("/api/v1/products/bulk", {"items": []}, format="json")

    assert "products" in assert_error(response, 400, "validation_error")


# --- locations ----------------------------------------------------------------------------------------


def test_location_created_with_an_integration_key_is_managed_by_it(tpl_client, warehouse_integration, org):
    body = {"name": "West", "kind": "3pl", "address": {"city": "Reno", "country": "US"}}

    response = tpl_client.post("/api/v1/locations", body, format="json")

    assert response.status_code == 201, response.content
    location = Location.objects.get(pk=response.json()["id"])
    assert (location.organization, location.managed_by) == (org, warehouse_integration)
    assert response.json() == {
        "id": str(location.pk),
        "name": "West",
        "kind": "3pl",
        "address": {"city": "Reno", "country": "US"},
        "active": True,
        "priority": 100,
        "ships": True,
        "sells": True,
        "updated_at": response.json()["updated_at"],
    }


def test_location_created_with_an_org_key_is_managed_by_nobody(org_client):
    response = org_client.post("/api/v1/locations", {"name": "Store 1", "kind": "store"}, format="json")

    assert response.status_code == 201, response.content
    assert Location.objects.get(pk=response.json()["id"]).managed_by is None


def test_location_names_are_unique_per_organization(tpl_client, warehouse, globex_location):
    clash = tpl_client.post("/api/v1/locations", {"name": "East"}, format="json")
    other_org_name = tpl_client.post("/api/v1/locations", {"name": "Globex DC"}, format="json")

    assert set(assert_error(clash, 400, "validation_error")) == {"name"}
    assert other_org_name.status_code == 201


def test_location_validation(tpl_client):
    response = tpl_client.post(
        "/api/v1/locations", {"name": "", "kind": "moon", "address": "x"}, format="json"
    )

    assert set(assert_error(response, 400, "validation_error")) == {"name", "kind", "address"}


def test_integration_key_sees_the_locations_it_manages(
    tpl_client, org_client, org, warehouse, globex_location
):
    unmanaged = Location.objects.create(organization=org, name="HQ store", kind="store")

    managed = [row["id"] for row in tpl_client.get("/api/v1/locations").json()["results"]]
    everything = {row["id"] for row in org_client.get("/api/v1/locations").json()["results"]}

    assert managed == [str(warehouse.pk)]
    assert everything == {str(warehouse.pk), str(unmanaged.pk)}
    assert tpl_client.get(f"/api/v1/locations/{warehouse.pk}").json()["name"] == "East"
    assert_error(tpl_client.get(f"/api/v1/locations/{unmanaged.pk}"), 404, "not_found")
    assert_error(tpl_client.get(f"/api/v1/locations/{globex_location.pk}"), 404, "not_found")
    assert_error(org_client.get(f"/api/v1/locations/{globex_location.pk}"), 404, "not_found")


def test_location_list_filters_and_pages(org_client, org, warehouse):
    Location.objects.bulk_create(
        Location(organization=org, name=f"Store {i}", kind="store") for i in range(4)
    )
    Location.objects.filter(pk=warehouse.pk).update(updated_at=timezone.now() + timedelta(hours=1))
    since = (timezone.now() + timedelta(minutes=30)).isoformat()

    recent = org_client.get("/api/v1/locations", {"updated_since": since}).json()["results"]
    stores = all_pages(org_client, "/api/v1/locations?kind=store&limit=3")

    assert [row["id"] for row in recent] == [str(warehouse.pk)]
    assert sorted(row["name"] for row in stores) == [f"Store {i}" for i in range(4)]


def test_locations_need_their_grants(channel_client):
    # The custom channel holds neither locations:read nor locations:write.
    assert assert_error(channel_client.get("/api/v1/locations"), 403, "missing_grant") == {
        "required": ["locations:read"]
    }
    assert_error(channel_client.post("/api/v1/locations", {"name": "X"}, format="json"), 403, "missing_grant")
    assert not Location.objects.exists()


# --- POST /inventory ----------------------------------------------------------------------------------


def push(client, location, items, **extra):
    return client.post(
        "/api/v1/inventory", {"location": str(location.pk), "items": items}, format="json", **extra
    )


def test_push_sets_absolute_counts(tpl_client, warehouse, stock, products):
    response = push(tpl_client, warehouse, [{"sku": "MUG", "on_hand": 3}, {"sku": "TSHIRT-S", "on_hand": 10}])

    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 2, "errors": []}
    assert InventoryLevel.objects.get(product=products["MUG"], location=warehouse).on_hand == 3
    # Only the changed count is published.
    assert list(
        OutboxEvent.objects.filter(type="inventory.updated").values_list("payload__sku", flat=True)
    ) == ["MUG"]


def test_push_reports_unknown_skus_and_raises_one_exception(
    tpl_client, warehouse, products, warehouse_integration
):
    items = [{"sku": "MUG", "on_hand": 4}, {"sku": "NOPE-1", "on_hand": 1}, {"sku": "NOPE-2", "on_hand": 2}]

    response = push(tpl_client, warehouse, items)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "updated": 1,
        "errors": [{"sku": "NOPE-1", "code": "unknown_sku"}, {"sku": "NOPE-2", "code": "unknown_sku"}],
    }
    assert InventoryLevel.objects.get(product=products["MUG"], location=warehouse).on_hand == 4
    exception = SyncException.objects.get()
    assert (exception.kind, exception.integration, exception.occurrences) == (
        ExceptionKind.UNKNOWN_SKU,
        warehouse_integration,
        1,
    )
    assert exception.data["skus"] == ["NOPE-1", "NOPE-2"]


def test_push_accepts_the_integrations_own_skus_and_hub_skus(
    tpl_client, warehouse, products, warehouse_integration
):
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="3PL-MUG", product=products["MUG"]
    )

    response = push(
        tpl_client, warehouse, [{"sku": "3PL-MUG", "on_hand": 7}, {"sku": "TSHIRT-M", "on_hand": 2}]
    )

    assert response.json() == {"updated": 2, "errors": []}
    assert InventoryLevel.objects.get(product=products["MUG"], location=warehouse).on_hand == 7
    assert InventoryLevel.objects.get(product=products["TSHIRT-M"], location=warehouse).on_hand == 2


def test_push_of_5000_items_takes_a_bounded_number_of_queries(
    tpl_client, org, warehouse, django_assert_max_num_queries
):
    Product.objects.bulk_create(Product(organization=org, sku=f"SKU-{i:04}", name="p") for i in range(5000))
    items = [{"sku": f"SKU-{i:04}", "on_hand": i % 50} for i in range(5000)]

    # 10 queries, plus one INSERT per 1000 levels and one per 1000 outbox events: the services' batch size.
    with django_assert_max_num_queries(10 + 2 * 5):
        response = push(tpl_client, warehouse, items)

    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 5000, "errors": []}
    assert InventoryLevel.objects.filter(location=warehouse).count() == 5000


def test_push_over_5000_items_is_413(tpl_client, warehouse, stock):
    response = push(tpl_client, warehouse, [{"sku": "MUG", "on_hand": 1}] * 5001)

    assert_error(response, 413, "payload_too_large")
    assert stock["MUG"].on_hand == InventoryLevel.objects.get(pk=stock["MUG"].pk).on_hand == 10


@pytest.mark.parametrize("bad", [-1, "5", 1.5, None, True, "many"])
def test_push_validation_names_the_item(tpl_client, warehouse, stock, bad):
    items = [{"sku": "MUG", "on_hand": 1}] * 12 + [{"sku": "TSHIRT-S", "on_hand": bad}]

    response = push(tpl_client, warehouse, items)

    assert set(assert_error(response, 400, "validation_error")) == {"items.12.on_hand"}
    assert InventoryLevel.objects.get(pk=stock["MUG"].pk).on_hand == 10  # nothing applied


def test_push_needs_inventory_write(channel_client, warehouse, stock):
    response = push(channel_client, warehouse, [{"sku": "MUG", "on_hand": 1}])

    assert assert_error(response, 403, "missing_grant") == {"required": ["inventory:write"]}


def test_push_needs_the_inventory_in_workflow(tpl_client, warehouse, stock, warehouse_integration):
    switch(warehouse_integration, "inventory_in", False)

    response = push(tpl_client, warehouse, [{"sku": "MUG", "on_hand": 1}])

    assert_error(response, 403, "workflow_disabled")
    assert InventoryLevel.objects.get(pk=stock["MUG"].pk).on_hand == 10


def test_push_to_a_location_the_key_does_not_manage_is_404(tpl_client, org, stock, globex_location, products):
    unmanaged = Location.objects.create(organization=org, name="HQ store", kind="store")

    for location in (unmanaged, globex_location):
        assert_error(push(tpl_client, location, [{"sku": "MUG", "on_hand": 1}]), 404, "not_found")
    # Not an id at all: a 400 naming the field (#14, finding 4), as for any malformed field of the body.
    response = tpl_client.post("/api/v1/inventory", {"location": "nope", "items": []}, format="json")
    assert "location" in assert_error(response, 400, "validation_error")
    assert not InventoryLevel.objects.exclude(location__name="East").exists()


def test_push_with_an_org_key_reaches_every_location_of_the_org(org_client, org, products):
    store = Location.objects.create(organization=org, name="HQ store", kind="store")

    response = push(org_client, store, [{"sku": "MUG", "on_hand": 6}])

    assert response.json() == {"updated": 1, "errors": []}


def test_push_with_an_idempotency_key_replays(tpl_client, warehouse, products):
    items = [{"sku": "MUG", "on_hand": 5}, {"sku": "NOPE", "on_hand": 1}]

    first = push(tpl_client, warehouse, items, HTTP_IDEMPOTENCY_KEY="push-1")
    InventoryLevel.objects.filter(location=warehouse).update(on_hand=0)
    again = push(tpl_client, warehouse, items, HTTP_IDEMPOTENCY_KEY="push-1")
    other = push(tpl_client, warehouse, items[:1], HTTP_IDEMPOTENCY_KEY="push-1")

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert (
        InventoryLevel.objects.get(product=products["MUG"], location=warehouse).on_hand == 0
    )  # not run again
    assert SyncException.objects.get().occurrences == 1
    assert_error(other, 422, "idempotency_conflict")


# --- GET /inventory -----------------------------------------------------------------------------------


def test_inventory_list_shows_levels_at_managed_locations_in_own_skus(
    tpl_client, org, stock, products, warehouse, warehouse_integration
):
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="3PL-MUG", product=products["MUG"]
    )
    store = Location.objects.create(organization=org, name="HQ store", kind="store")
    InventoryLevel.objects.create(product=products["MUG"], location=store, on_hand=99)
    InventoryLevel.objects.filter(pk=stock["MUG"].pk).update(committed=4)

    rows = tpl_client.get("/api/v1/inventory").json()["results"]

    assert {row["sku"] for row in rows} == {"3PL-MUG", "TSHIRT-S", "TSHIRT-M"}
    mug = next(row for row in rows if row["sku"] == "3PL-MUG")
    assert mug == {
        "id": str(stock["MUG"].pk),
        "sku": "3PL-MUG",
        "location": str(warehouse.pk),
        "on_hand": 10,
        "committed": 4,
        "available": 6,
        "updated_at": mug["updated_at"],
    }


def test_inventory_list_filters(
    tpl_client, org_client, org, stock, products, warehouse, warehouse_integration
):
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="3PL-MUG", product=products["MUG"]
    )
    store = Location.objects.create(organization=org, name="HQ store", kind="store")
    InventoryLevel.objects.create(product=products["MUG"], location=store, on_hand=99)
    InventoryLevel.objects.filter(pk=stock["TSHIRT-S"].pk).update(
        updated_at=timezone.now() + timedelta(hours=1)
    )
    since = (timezone.now() + timedelta(minutes=30)).isoformat()

    def skus(client, **params):
        return sorted(row["sku"] for row in client.get("/api/v1/inventory", params).json()["results"])

    assert skus(tpl_client, sku="3PL-MUG") == ["3PL-MUG"]
    assert skus(tpl_client, sku="MUG") == ["3PL-MUG"]  # the hub SKU finds it too
    assert skus(tpl_client, sku="NOPE") == []
    assert skus(tpl_client, updated_since=since) == ["TSHIRT-S"]
    assert skus(org_client, location=str(store.pk)) == ["MUG"]
    assert skus(org_client, sku="MUG") == ["MUG", "MUG"]
    assert skus(tpl_client, location=str(store.pk)) == []  # not its location: nothing, not an error
    # Not an id at all: a 400 naming the parameter (#14, finding 4; was an empty list, and "²" a 500).
    details = assert_error(tpl_client.get("/api/v1/inventory", {"location": "x"}), 400, "validation_error")
    assert "location" in details


def test_inventory_list_needs_inventory_read(api_client, key_for, warehouse_integration, stock):
    client = api_client(key_for(warehouse_integration, "inventory:write"))

    assert assert_error(client.get("/api/v1/inventory"), 403, "missing_grant") == {
        "required": ["inventory:read"]
    }


def test_inventory_list_pages_through_levels_sharing_one_updated_at(org_client, org, warehouse):
    # Bulk updates can stamp many levels with one time (DRF's own cursor loops past 1000 such ties).
    products = Product.objects.bulk_create(
        Product(organization=org, sku=f"S-{i:04}", name="p") for i in range(1600)
    )
    InventoryLevel.objects.bulk_create(
        InventoryLevel(product=p, location=warehouse, on_hand=1) for p in products
    )
    InventoryLevel.objects.update(updated_at=timezone.now())

    rows = all_pages(org_client, "/api/v1/inventory?limit=500")

    assert sorted(row["sku"] for row in rows) == [f"S-{i:04}" for i in range(1600)]
    ats = [parse_datetime(row["updated_at"]) for row in rows]
    assert ats == sorted(ats, reverse=True)


def test_inventory_list_rejects_a_forged_cursor(org_client, stock):
    assert set(assert_error(org_client.get("/api/v1/inventory?cursor=bm9wZQ"), 400, "validation_error")) == {
        "cursor"
    }


# --- GET /availability --------------------------------------------------------------------------------


def test_availability_for_a_channel_after_buffers_in_its_own_skus(
    channel_client, org, integration, stock, products, warehouse
):
    SkuMapping.objects.create(integration=integration, external_sku="SHOP-MUG", product=products["MUG"])
    InventoryLevel.objects.filter(pk=stock["TSHIRT-S"].pk).update(committed=3)
    InventoryBuffer.objects.create(organization=org, product=products["TSHIRT-M"], quantity=4)

    response = channel_client.get("/api/v1/availability")

    assert response.status_code == 200, response.content
    rows = {row["sku"]: row for row in response.json()["results"]}
    assert {sku: row["available"] for sku, row in rows.items()} == {
        "SHOP-MUG": 10,
        "TSHIRT-M": 6,
        "TSHIRT-S": 7,
    }
    assert set(rows["SHOP-MUG"]) == {"sku", "available", "updated_at"}
    assert [row["sku"] for row in response.json()["results"]] == ["SHOP-MUG", "TSHIRT-M", "TSHIRT-S"]


def test_availability_counts_only_the_channels_locations(channel_client, org, integration, stock, products):
    store = Location.objects.create(organization=org, name="HQ store", kind="store")
    InventoryLevel.objects.create(product=products["MUG"], location=store, on_hand=5)
    ChannelLocation.objects.create(channel=integration, location=store)

    rows = {
        row["sku"]: row["available"] for row in channel_client.get("/api/v1/availability").json()["results"]
    }

    assert rows == {"MUG": 5, "TSHIRT-M": 0, "TSHIRT-S": 0}


def test_availability_filters_by_sku_and_updated_since(channel_client, integration, stock, products):
    SkuMapping.objects.create(integration=integration, external_sku="SHOP-MUG", product=products["MUG"])
    later = timezone.now() + timedelta(hours=1)
    InventoryLevel.objects.filter(pk=stock["TSHIRT-S"].pk).update(updated_at=later)
    since = (timezone.now() + timedelta(minutes=30)).isoformat()

    def skus(**params):
        return [row["sku"] for row in channel_client.get("/api/v1/availability", params).json()["results"]]

    assert skus(sku="SHOP-MUG") == skus(sku="MUG") == ["SHOP-MUG"]
    assert skus(sku="NOPE") == []
    assert skus(updated_since=since) == ["TSHIRT-S"]
    row = channel_client.get("/api/v1/availability", {"sku": "TSHIRT-S"}).json()["results"][0]
    assert parse_datetime(row["updated_at"]) == later


def test_availability_pages_by_sku(channel_client, org, warehouse):
    Product.objects.bulk_create(Product(organization=org, sku=f"S-{i:02}", name="p") for i in range(7))

    rows = all_pages(channel_client, "/api/v1/availability?limit=3")

    assert [row["sku"] for row in rows] == [f"S-{i:02}" for i in range(7)]


def test_availability_is_for_channel_keys_only(tpl_client, org_client, stock):
    assert_error(tpl_client.get("/api/v1/availability"), 404, "not_found")
    assert_error(org_client.get("/api/v1/availability"), 404, "not_found")


def test_availability_needs_inventory_read(api_client, key_for, integration, stock):
    client = api_client(key_for(integration, "products:read"))

    assert_error(client.get("/api/v1/availability"), 403, "missing_grant")


def test_availability_of_another_org_stays_there(api_client, other_integration_key, other_org, stock):
    Product.objects.create(organization=other_org, sku="GLOBEX-1", name="g")

    rows = api_client(other_integration_key).get("/api/v1/availability").json()["results"]

    assert rows == [{"sku": "GLOBEX-1", "available": 0, "updated_at": rows[0]["updated_at"]}]


# --- no query per row ---------------------------------------------------------------------------------


def make_rows(org, warehouse, integration, count):
    """`count` products, each with stock at `warehouse` and a SKU mapping for `integration`."""
    start = Product.objects.filter(organization=org).count()
    products = Product.objects.bulk_create(
        Product(organization=org, sku=f"Q-{start + i:04}", name="q") for i in range(count)
    )
    InventoryLevel.objects.bulk_create(
        InventoryLevel(product=p, location=warehouse, on_hand=3) for p in products
    )
    SkuMapping.objects.bulk_create(
        SkuMapping(integration=integration, external_sku=f"EXT-{p.sku}", product=p) for p in products
    )
    for i in range(count):
        Location.objects.get_or_create(organization=org, name=f"Site {start + i}", managed_by=integration)


@pytest.mark.parametrize(
    "client_name,url,mapped",
    [
        ("tpl_client", "/api/v1/products", "warehouse_integration"),
        ("tpl_client", "/api/v1/locations", "warehouse_integration"),
        ("tpl_client", "/api/v1/inventory", "warehouse_integration"),
        ("org_client", "/api/v1/inventory", "warehouse_integration"),
        ("channel_client", "/api/v1/availability", "integration"),
    ],
)
def test_lists_take_no_query_per_row(
    request, org, warehouse, client_name, url, mapped, django_assert_max_num_queries
):
    client = request.getfixturevalue(client_name)
    integration = request.getfixturevalue(mapped)
    client.get(url)  # the key's first use writes its last-used time: not part of the list's cost
    make_rows(org, warehouse, integration, 3)
    with django_assert_max_num_queries(10):
        few = query_count(client, f"{url}?limit=500")

    make_rows(org, warehouse, integration, 297)
    with django_assert_max_num_queries(10):
        many = query_count(client, f"{url}?limit=500")

    assert many == few
    assert len(client.get(f"{url}?limit=500").json()["results"]) >= 300


# --- global keys --------------------------------------------------------------------------------------


def test_global_key_reads_every_org_but_cannot_write_without_one(
    api_client, issue_key, superuser, products, globex_product, warehouse
):
    client = api_client(issue_key(kind=KeyKind.GLOBAL, name="platform", user=superuser, grants=ALL_GRANTS))

    skus = {row["sku"] for row in all_pages(client, "/api/v1/products")}
    created = client.post("/api/v1/products", {"sku": "X", "name": "x"}, format="json")
    pushed = push(client, warehouse, [{"sku": "MUG", "on_hand": 2}])

    assert {"MUG", "GLOBEX-1"} <= skus
    assert_error(created, 404, "not_found")
    # A stock push names its location, and so its organization.
    assert pushed.json() == {"updated": 1, "errors": []}
