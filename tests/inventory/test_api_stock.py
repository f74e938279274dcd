"""The stock endpoints of docs/connectors/contract.md: POST/GET /inventory and /availability; no query per
row; global keys."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent
from inventory.models import ChannelLocation, InventoryBuffer, InventoryLevel, Location, Product, SkuMapping
from tests.api.helpers import assert_error
from tests.inventory.helpers import ALL_GRANTS, all_pages, query_count, switch
from tokens.choices import KeyKind

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

    # 10 queries, plus one INSERT per 1000 levels and one per 1000 outbox events: the services' batch size;
    # and 5 for the events as each entitled integration is told of them (#16): the integrations, their keys'
    # grants, one rendering per integration, the sequence counters, one INSERT (21 measured).
    with django_assert_max_num_queries(10 + 2 * 5 + 5):
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
