"""The catalog endpoints of docs/connectors/contract.md: products (one and in bulk) and locations."""

from datetime import timedelta

from django.utils import timezone

from integrations.models import OutboxEvent
from inventory.models import Location, Product
from tests.api.helpers import assert_error
from tests.inventory.helpers import all_pages, switch

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
        "archived_at": None,
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

    refused = erp_client.patch(
        f"/api/v1/products/{mug.pk}", {"name": "Mug XL", "sku": "OTHER"}, format="json"
    )
    response = erp_client.patch(f"/api/v1/products/{mug.pk}", {"name": "Mug XL"}, format="json")

    # The SKU is read-only: naming it is a 400, not silently ignored (issue 17); nothing was changed by it.
    assert assert_error(refused, 400, "validation_error") == {"sku": ["Read-only: it cannot be set."]}
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
